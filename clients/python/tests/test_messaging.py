"""Messages through the real bus: send, broadcast, publish and subscribe, acknowledgement,
send credit and flush, and the errors the bus answers with."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Connect, take

import acb


async def test_send_reaches_the_agent_and_is_confirmed(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    outcome = await alice.send("bob", "hi bob")
    # `queued` when the bus has PostgreSQL and still reads bob's stored messages back (5.1a).
    assert outcome is not None and outcome.outcome in (acb.Outcome.DELIVERED, acb.Outcome.QUEUED)
    [delivery] = await take(bob.deliveries(), 1)
    assert (delivery.sender, delivery.kind, delivery.text, delivery.attempt) == (
        "alice",
        acb.DeliveryKind.DIRECT,
        "hi bob",
        1,
    )


async def test_a_send_to_nobody_raises_the_bus_code(connect: Connect) -> None:
    alice = await connect("alice")
    with pytest.raises(acb.RoutingError) as raised:
        await alice.send("nobody", b"x")
    assert raised.value.code == acb.ErrorCode.UNKNOWN_AGENT
    with pytest.raises(acb.RoutingError) as raised:
        await alice.send(acb.capability("translate"), b"x")
    assert raised.value.code == acb.ErrorCode.NO_CAPABLE_AGENT
    with pytest.raises(acb.InvalidRequestError) as invalid:
        await alice.send("bad id", b"x")
    assert invalid.value.code == acb.ErrorCode.INVALID_ARGUMENT


async def test_many_unconfirmed_sends_arrive_in_order_beyond_the_send_window(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    count = 5_000  # several windows of credit (1,024): the sender waits for CREDIT as it goes

    async def receive() -> list[int]:
        return [int(d.text) for d in await take(bob.deliveries(), count, timeout=30)]

    receiver = asyncio.create_task(receive())
    for number in range(count):
        await alice.send("bob", str(number), confirm=False)
    await alice.flush()
    assert await receiver == list(range(count))


async def test_flush_raises_the_first_failure_of_unconfirmed_sends(connect: Connect) -> None:
    alice = await connect("alice")
    await connect("bob")
    await alice.send("bob", b"fine", confirm=False)
    await alice.send("ghost", b"lost", confirm=False)
    with pytest.raises(acb.RoutingError) as raised:
        await alice.flush()
    assert raised.value.code == acb.ErrorCode.UNKNOWN_AGENT
    await alice.flush()  # reported once


async def test_publish_reaches_matching_subscriptions_only(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await bob.subscribe("jobs.*.created")
    await carol.subscribe("jobs.>")
    await alice.publish("jobs.eu.created", "one")
    await alice.publish("jobs.eu.done", "two")
    await alice.flush()
    [got] = await take(bob.deliveries(), 1)
    assert (got.kind, got.subject, got.text) == (acb.DeliveryKind.TOPIC, "jobs.eu.created", "one")
    assert [d.text for d in await take(carol.deliveries(), 2)] == ["one", "two"]
    await bob.unsubscribe("jobs.*.created")
    with pytest.raises(acb.InvalidRequestError):
        await bob.unsubscribe("jobs.*.created")
    with pytest.raises(acb.InvalidRequestError):
        await bob.subscribe("jobs..bad")


async def test_broadcast_reaches_every_other_agent(connect: Connect) -> None:
    alice = await connect("alice")
    others = [await connect(name) for name in ("bob", "carol")]
    await alice.broadcast("all hands")
    for other in others:
        [got] = await take(other.deliveries(), 1)
        assert (got.kind, got.sender, got.text) == (acb.DeliveryKind.BROADCAST, "alice", "all hands")


async def test_close_acknowledges_what_was_consumed_and_the_rest_comes_again(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    for text in ("one", "two", "three"):
        await alice.send("bob", text)
    [first] = await take(bob.deliveries(), 1)
    assert first.text == "one"
    await bob.close()
    again = await connect("bob")
    redelivered = await take(again.deliveries(), 2)
    assert [d.text for d in redelivered] == ["two", "three"]


async def test_nack_has_the_bus_deliver_again(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send("bob", "retry me")
    deliveries = bob.deliveries()
    first = await anext(deliveries)
    first.nack()
    second = await asyncio.wait_for(anext(deliveries), 10)
    assert (second.text, second.attempt) == ("retry me", 2)
    assert second.delivery_id != first.delivery_id


async def test_a_consumer_role_may_not_send(connect: Connect) -> None:
    reader = await connect("reader", roles=["agent-consumer"])
    await connect("bob")
    with pytest.raises(acb.PermissionDeniedError) as raised:
        await reader.send("bob", b"x")
    assert raised.value.code == acb.ErrorCode.FORBIDDEN


async def test_two_iterations_waiting_at_once_both_get_deliveries_and_both_end_at_close(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    first, second = bob.deliveries(), bob.deliveries()
    waiting = [asyncio.ensure_future(anext(first)), asyncio.ensure_future(anext(second))]
    await asyncio.sleep(0)  # both wait now
    await alice.send("bob", "one")
    await alice.send("bob", "two")
    got = await asyncio.wait_for(asyncio.gather(*waiting), 10)
    assert sorted(d.text for d in got) == ["one", "two"]
    later = [asyncio.ensure_future(anext(first)), asyncio.ensure_future(anext(second))]
    await asyncio.sleep(0)
    await bob.close()
    for ended in await asyncio.wait_for(asyncio.gather(*later, return_exceptions=True), 10):
        assert isinstance(ended, StopAsyncIteration)
