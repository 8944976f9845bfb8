"""Durable messages through the real bus (protocol version 3, docs/protocol.md 5.1b): `durable=True`
stores a send, broadcast or publish in PostgreSQL before the bus answers OK `queued`; the receiver
gets it with its `message_id`; a crash of the bus loses none, and a message the application
acknowledged is not handed to it twice.

They need PostgreSQL: they fail, not skip, without ACB_POSTGRES_URL (`make test` always sets it).
The refusals on a bus without it use the session's in-memory bus."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from conftest import Bus, Connect, agents_of, eventually, require_postgres, start_bus, take

import acb
from acb import _frames as f
from acb._connection import SendOutcome

STORED = SendOutcome(acb.Outcome.QUEUED, 1)


@pytest.fixture(scope="module")
def durable_bus(migrated: None) -> Iterator[Bus]:
    """A bus with the sidecars of the environment (PostgreSQL above all), for this module's tests."""
    require_postgres("A durable message")
    running = start_bus()
    yield running
    running.stop()
    shutil.rmtree(running.directory, ignore_errors=True)


@pytest.fixture
async def connect_durable(durable_bus: Bus, tenant: str) -> AsyncIterator[Connect]:
    async with agents_of(durable_bus, tenant) as connect_agent:
        yield connect_agent


async def settled_in(sender: acb.Client, receiver: acb.Client) -> None:
    """Waits until the bus delivers `sender`'s plain sends to `receiver` from memory: until it has
    read the receiver's stored backlog back, and heard its ACKs of what it read, it stores even
    plain sends to it, behind the rest (5.1a). Takes the warm-up messages it sends."""
    for _ in range(50):
        outcome = await sender.send(receiver.agent_id, "warm-up")
        [delivery] = await take(receiver.deliveries(), 1)
        assert delivery.text == "warm-up"
        delivery.ack()
        if outcome == SendOutcome(acb.Outcome.DELIVERED, None):
            return
    raise AssertionError(f"plain sends to {receiver.agent_id} are still stored")


async def test_a_durable_send_to_an_online_agent_is_stored_then_delivered_with_its_message_id(
    connect_durable: Connect,
) -> None:
    alice = await connect_durable("alice")
    bob = await connect_durable("bob")
    assert await alice.send("bob", "kept", durable=True) == STORED
    [delivery] = await take(bob.deliveries(), 1)
    assert (delivery.sender, delivery.text, delivery.attempt) == ("alice", "kept", 1)
    assert delivery.message_id != 0


async def test_a_plain_send_is_delivered_from_memory_with_message_id_0(connect_durable: Connect) -> None:
    alice = await connect_durable("alice")
    bob = await connect_durable("bob")
    await settled_in(alice, bob)
    assert await alice.send("bob", "fleeting") == SendOutcome(acb.Outcome.DELIVERED, None)
    [delivery] = await take(bob.deliveries(), 1)
    assert (delivery.text, delivery.message_id) == ("fleeting", 0)


async def test_a_durable_publish_is_stored_once_per_subscriber(connect_durable: Connect) -> None:
    alice = await connect_durable("alice")
    readers = [await connect_durable(name) for name in ("bob", "carol")]
    for reader in readers:
        await reader.subscribe("news.*")
    assert await alice.publish("news.today", "extra", durable=True) == SendOutcome(acb.Outcome.QUEUED, 2)
    for reader in readers:
        [delivery] = await take(reader.deliveries(), 1)
        assert (delivery.kind, delivery.subject, delivery.text) == (acb.DeliveryKind.TOPIC, "news.today", "extra")
        assert delivery.message_id != 0


async def test_a_durable_broadcast_is_stored_once_per_other_agent(connect_durable: Connect) -> None:
    alice = await connect_durable("alice")
    readers = [await connect_durable(name) for name in ("bob", "carol", "dave")]
    assert await alice.broadcast("all hands", durable=True) == SendOutcome(acb.Outcome.QUEUED, 3)
    for reader in readers:
        [delivery] = await take(reader.deliveries(), 1)
        assert (delivery.kind, delivery.text) == (acb.DeliveryKind.BROADCAST, "all hands")
        assert delivery.message_id != 0


async def test_sends_around_a_durable_one_are_confirmed_and_it_is_settled_by_its_own_ok(
    connect_durable: Connect,
) -> None:
    """No CONFIRM covers the durable send before its OK: written among plain sends that CONFIRMs
    settle, it still comes back `queued`, and flush waits for it."""
    alice = await connect_durable("alice")
    bob = await connect_durable("bob")
    carol = await connect_durable("carol")
    await settled_in(alice, carol)
    outcomes = await asyncio.gather(
        *(alice.send("carol", f"before {n}") for n in range(20)),
        alice.send("bob", "kept", durable=True),
        *(alice.send("carol", f"after {n}") for n in range(20)),
    )
    assert outcomes[20] == STORED
    assert outcomes[:20] + outcomes[21:] == [SendOutcome(acb.Outcome.DELIVERED, None)] * 40
    assert await alice.send("bob", "unconfirmed", durable=True, confirm=False) is None
    for n in range(20):
        await alice.send("carol", f"later {n}", confirm=False)
    await alice.flush()
    assert not (await alice._current())._sends, "flush waited for the durable send's OK"
    assert [d.text for d in await take(bob.deliveries(), 2)] == ["kept", "unconfirmed"]
    expected = [f"{when} {n}" for when in ("before", "after", "later") for n in range(20)]
    assert [d.text for d in await take(carol.deliveries(), 60)] == expected


async def test_a_durable_request_is_refused_invalid_argument(connect_durable: Connect) -> None:
    """A request cannot be durable (its answer goes to a requester a crash disconnects): `request`
    has no such argument, and the bus refuses the flag on the wire."""
    alice = await connect_durable("alice")
    await connect_durable("bob")
    with pytest.raises(acb.InvalidRequestError) as refused:
        await alice._call(
            lambda ref: f.Request(ref, f.TargetKind.AGENT, "bob", "", 0, b"?", f.MessageFlags.DURABLE).encode()
        )
    assert refused.value.code == acb.ErrorCode.INVALID_ARGUMENT


async def test_a_flag_the_bus_does_not_know_is_refused_invalid_argument(connect_durable: Connect) -> None:
    alice = await connect_durable("alice")
    await connect_durable("bob")
    connection = await alice._current()
    await connection.take_credit()
    ref = connection.next_send_ref()
    waiter = connection.send_frame(ref, f.encode_send(f.SEND, ref, 0, b"bob", b"", 0, b"x", 0x02), confirm=True)
    assert waiter is not None
    with pytest.raises(acb.InvalidRequestError) as refused:
        await waiter
    assert refused.value.code == acb.ErrorCode.INVALID_ARGUMENT
    assert await alice.send("bob", "still fine") is not None


async def test_durable_on_a_bus_without_postgresql_raises_unavailable(connect: Connect) -> None:
    alice = await connect("alice")
    await connect("bob")
    commands: list[Callable[[], Awaitable[SendOutcome | None]]] = [
        lambda: alice.send("bob", "x", durable=True),
        lambda: alice.broadcast("x", durable=True),
        lambda: alice.publish("news.today", "x", durable=True),
    ]
    for command in commands:
        with pytest.raises(acb.ACBError) as refused:
            await command()
        assert refused.value.code == acb.ErrorCode.UNAVAILABLE
    await alice.send("bob", "x", durable=True, confirm=False)
    with pytest.raises(acb.ACBError) as refused:
        await alice.flush()
    assert refused.value.code == acb.ErrorCode.UNAVAILABLE


# MARK: redelivery


async def test_a_message_acknowledged_before_the_connection_broke_is_not_handed_out_again(
    connect_durable: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """Bob acknowledges a durable message just as his connection breaks: the ACK never leaves, the
    bus delivers it again on his next session (same message_id, next attempt), and the client
    acknowledges that repeat itself."""
    caplog.set_level(logging.DEBUG, logger="acb")
    alice = await connect_durable("alice")
    bob = await connect_durable("bob", initial_backoff=0.01)
    await bob.register("worker")  # a registered agent's messages are stored while it is away
    deliveries = bob.deliveries()
    await alice.send("bob", "once", durable=True)
    [delivery] = await take(deliveries, 1)
    session = bob.welcome
    bob.drop_connection()
    delivery.ack()  # written to a connection already cut: lost
    await alice.send("bob", "next", durable=True)
    [following] = await take(deliveries, 1, timeout=20)
    assert following.text == "next"
    # Deliveries of the new session may come before its re-registration is answered; once that is
    # in, the client is on the new connection.
    await bob.flush()
    assert bob.welcome is not session
    assert f"message {delivery.message_id} delivered again after it was acknowledged" in caplog.text


async def test_after_a_crash_of_the_bus_each_stored_message_is_handed_out_exactly_once(tenant: str) -> None:
    """Alice stores two messages for bob; bob acknowledges the first and the bus is killed (SIGKILL)
    at once, before or after it committed that acknowledgement. After the restart bob gets the second
    (never acknowledged), then a third sent afterwards, and never the first again."""
    require_postgres("A durable message")
    first = start_bus()
    restarted: Bus | None = None
    try:
        async with agents_of(first, tenant) as connect_agent:
            alice = await connect_agent("alice", initial_backoff=0.05)
            bob = await connect_agent("bob", initial_backoff=0.05)
            deliveries = bob.deliveries()
            for text in ("one", "two"):
                assert await alice.send("bob", text, durable=True) == STORED
            [one] = await take(deliveries, 1)
            sessions = {alice: alice.welcome, bob: bob.welcome}
            one.ack()
            await asyncio.sleep(0)  # the ACK goes out at the end of this turn ...
            first.crash()  # ... and the bus dies at once, before it commits it or after
            restarted = start_bus("--port", str(first.port), directory=first.directory)

            async def both_reconnected() -> bool:
                # By identity: a restarted bus counts session ids from 1 again, so WELCOMEs may be equal.
                return all(client.welcome is not welcome for client, welcome in sessions.items())

            await eventually(both_reconnected, timeout=30)
            assert await alice.send("bob", "three", durable=True) == STORED
            texts = [d.text for d in await take(deliveries, 2, timeout=30)]
            assert texts == ["two", "three"]
            assert one.message_id in bob._handled_messages
    finally:
        for running in (first, restarted):
            if running is not None and running.process.poll() is None:
                running.stop()
        shutil.rmtree(first.directory, ignore_errors=True)
