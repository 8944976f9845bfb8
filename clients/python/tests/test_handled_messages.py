"""Repeats of stored messages, without a bus (the frames of a connection fed in by hand): a stored
message the application acknowledged is acknowledged again, and not handed out, when it is
delivered again with the same `message_id` (protocol version 3; docs/python.md, Durable messages)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from in_memory import attach

from acb import _frames as f
from acb._connection import Connection
from acb._handled_messages import CAPACITY, HandledMessages
from acb.client import Client


def deliver(connection: Connection, frames: Iterable[f.Deliver]) -> None:
    connection.data_received(b"".join(frame.encode() for frame in frames))


def stored(delivery_id: int, message_id: int, text: str, attempt: int = 1) -> f.Deliver:
    return f.Deliver(
        delivery_id, f.DeliveryKind.DIRECT, "alice", attempt=attempt, payload=text.encode(), message_id=message_id
    )


async def written_out() -> None:
    """Lets the connection write what it queued this turn (ACKs go out once per event-loop turn)."""
    await asyncio.sleep(0)


# MARK: HandledMessages


def test_it_keeps_the_most_recent_ids_up_to_its_capacity() -> None:
    handled = HandledMessages(capacity=3)
    for message_id in (1, 2, 3, 2, 4):
        handled.add(message_id)
    assert [message_id in handled for message_id in (1, 2, 3, 4)] == [False, True, True, True]
    assert len(handled) == 3


def test_its_default_capacity_is_65536() -> None:
    handled = HandledMessages()
    for message_id in range(1, CAPACITY + 2):
        handled.add(message_id)
    assert CAPACITY == 65_536
    assert len(handled) == CAPACITY
    assert 1 not in handled and 2 in handled and CAPACITY + 1 in handled


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        HandledMessages(capacity=0)


# MARK: the client


async def test_a_stored_message_delivered_after_its_ack_is_acked_again_and_not_handed_out(
    detached_client: Client,
) -> None:
    connection, wire = attach(detached_client)
    deliveries = detached_client.deliveries()
    deliver(connection, [stored(1, 77, "first")])
    first = await anext(deliveries)
    assert (first.text, first.message_id) == ("first", 77)
    first.ack()
    deliver(connection, [stored(2, 77, "first", attempt=2), stored(3, 78, "second")])
    second = await anext(deliveries)
    assert (second.text, second.message_id) == ("second", 78)
    await written_out()
    assert wire.acks() == [2], "one cumulative ACK: the first, and its repeat at once"
    assert not detached_client._inbox


async def test_a_repeat_on_a_later_connection_is_filtered_too(detached_client: Client) -> None:
    """The handled ids are the client's: a redelivery comes on a new connection, after a reconnect
    or a restart of the bus, with a new delivery id."""
    old, _ = attach(detached_client)
    deliveries = detached_client.deliveries()
    deliver(old, [stored(5, 2**63 + 1, "kept")])
    (await anext(deliveries)).ack()
    new, wire = attach(detached_client)
    deliver(new, [stored(1, 2**63 + 1, "kept", attempt=2), stored(2, 9, "next")])
    assert (await anext(deliveries)).text == "next"
    await written_out()
    assert wire.acks() == [1], "acknowledged again at once, on the connection it came on"


async def test_a_message_acknowledged_by_the_iteration_is_remembered(detached_client: Client) -> None:
    """Asking for the next delivery acknowledges the previous one: that counts as handled."""
    connection, _ = attach(detached_client)
    deliveries = detached_client.deliveries()
    deliver(connection, [stored(1, 40, "a"), stored(2, 41, "b")])
    assert [(await anext(deliveries)).text for _ in range(2)] == ["a", "b"]
    assert 40 in detached_client._handled_messages and 41 not in detached_client._handled_messages


async def test_a_nacked_message_comes_again(detached_client: Client) -> None:
    connection, _ = attach(detached_client)
    deliveries = detached_client.deliveries()
    deliver(connection, [stored(1, 50, "try")])
    (await anext(deliveries)).nack()
    deliver(connection, [stored(2, 50, "try", attempt=2)])
    again = await anext(deliveries)
    assert (again.text, again.attempt, again.message_id) == ("try", 2, 50)


async def test_messages_in_memory_only_are_never_filtered(detached_client: Client) -> None:
    """message_id 0 (held in memory) and an absent one (a bus before version 3) name no message."""
    connection, _ = attach(detached_client)
    deliveries = detached_client.deliveries()
    deliver(connection, [stored(1, 0, "a"), f.Deliver(2, 0, "alice", payload=b"b")])
    a = await anext(deliveries)
    b = await anext(deliveries)
    deliver(connection, [stored(3, 0, "c"), f.Deliver(4, 0, "alice", payload=b"d")])
    assert [a.message_id, b.message_id] == [0, 0]
    assert [(await anext(deliveries)).text for _ in range(2)] == ["c", "d"]
