"""Requests and replies through the real bus, and the registry they route by."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Connect, eventually, take

import acb


async def test_serve_answers_requests_by_capability(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await bob.register("summarizer", ["summarize"], metadata={"lang": "en"})

    @bob.serve
    async def summarize(request: acb.Delivery) -> str:
        return f"{len(request.text.split())} words"

    response = await alice.request(acb.capability("summarize"), "the quick brown fox", timeout=10)
    assert (response.ok, response.sender, response.text) == (True, "bob", "4 words")


async def test_a_failing_handler_answers_with_an_error_reply(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")

    async def fail(request: acb.Delivery) -> bytes:
        raise RuntimeError("cannot do that")

    bob.serve(fail)
    response = await alice.request("bob", b"please", timeout=10)
    assert (response.ok, response.status, response.text) == (False, acb.ReplyStatus.ERROR, "cannot do that")


async def test_a_request_nobody_answers_times_out(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")  # no handler: the request waits in bob's deliveries
    with pytest.raises(acb.RequestTimeoutError) as raised:
        await alice.request("bob", b"hello?", timeout=0.3)
    assert raised.value.code == acb.ErrorCode.TIMEOUT
    [request] = await take(bob.deliveries(), 1)
    assert request.kind == acb.DeliveryKind.REQUEST and request.correlation_id != 0


async def test_a_request_taken_from_deliveries_is_answered_with_reply(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")

    async def answer() -> None:
        [request] = await take(bob.deliveries(), 1)
        assert request.deadline_ms > 0
        request.reply(request.payload.upper())

    answering = asyncio.create_task(answer())
    response = await alice.request("bob", b"shout", timeout=10)
    await answering
    assert response.payload == b"SHOUT"


async def test_nested_requests_inherit_the_deadline(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    seen: list[int] = []

    @carol.serve
    async def deadline(request: acb.Delivery) -> str:
        seen.append(request.deadline_ms)
        return "ok"

    @bob.serve
    async def relay(request: acb.Delivery) -> bytes:
        return (await bob.request("carol", request.payload, timeout=60)).payload

    await alice.request("bob", b"x", timeout=5)
    assert seen and seen[0] <= acb.client.now_ms() + 5_000


async def test_discover_lists_agents_with_status_and_readiness(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await bob.register("worker", ["resize", "crop"], location="eu-1")
    page = await alice.discover(capability="resize")
    [info] = page.agents
    assert info.agent_id == "bob"
    assert info.description.capabilities == ["resize", "crop"]
    assert info.description.location == "eu-1"
    assert (info.status, info.readiness) == (acb.AgentStatus.ONLINE, acb.Readiness.READY)

    bob.set_readiness(acb.Readiness.BUSY)

    async def busy() -> bool:
        [info] = (await alice.discover(capability="resize")).agents
        return bool(info.readiness == acb.Readiness.BUSY)

    await eventually(busy)
    with pytest.raises(acb.RoutingError) as raised:
        await alice.request(acb.capability("resize"), b"img", timeout=2)
    assert raised.value.code == acb.ErrorCode.NO_CAPABLE_AGENT
    await bob.unregister()
    assert [a.agent_id async for a in alice.agents()] == []
