"""A connection without a bus (its frames fed in by hand, in the orders the bus writes them): the
version it asks for in HELLO, and how it settles sends: a durable send by its own OK `queued`, the
sends around it by CONFIRMs (docs/protocol.md 4.5b: no CONFIRM covers a send being stored before
its answer)."""

from __future__ import annotations

import asyncio

from in_memory import attach

import acb
from acb import _frames as f
from acb._connection import Connection, SendOutcome
from acb.client import Client

CONFIRMED = SendOutcome(acb.Outcome.DELIVERED, None)


async def test_hello_asks_for_protocol_version_3(detached_client: Client) -> None:
    connection, wire = attach(detached_client)
    connection.welcome = None
    welcome = asyncio.ensure_future(connection.hello("token", "test"))
    await asyncio.sleep(0)  # HELLO is written, and the connection waits for WELCOME
    connection.data_received(f.Welcome(1, "acme", "bob").encode())
    assert (await welcome).agent_id == "bob"
    assert wire.frames() == [f.Hello(version=3, token="token", client_name="test")]


def sends(connection: Connection, count: int) -> list[asyncio.Future[SendOutcome]]:
    """`count` sends written with `confirm`, refs 1 to `count` (their bytes do not matter here)."""
    waiters = []
    for _ in range(count):
        ref = connection.next_send_ref()
        waiter = connection.send_frame(ref, f.Ping(ref).encode(), confirm=True)
        assert waiter is not None
        waiters.append(waiter)
    return waiters


async def test_a_durable_send_is_settled_by_its_own_ok_and_confirms_settle_the_others(
    detached_client: Client,
) -> None:
    """Sends 1 to 3, 2 durable, answered as the bus writes it: CONFIRM stops below 2 while 2 is being
    stored, then OK `queued` for 2, then a CONFIRM covering 3."""
    connection, _ = attach(detached_client)
    one, two, three = sends(connection, 3)
    connection.data_received(f.Confirm(1).encode())
    assert one.result() == CONFIRMED
    assert not two.done() and not three.done()
    connection.data_received(f.Ok(2, f.Outcome.QUEUED, 1).encode() + f.Confirm(3).encode())
    assert two.result() == SendOutcome(acb.Outcome.QUEUED, 1)
    assert three.result() == CONFIRMED
    assert not connection._sends, "nothing left for flush to wait for"


async def test_an_ok_queued_ahead_of_earlier_sends_waits_for_their_confirm(detached_client: Client) -> None:
    """Send 3 is durable and stored before sends 1 and 2 are confirmed: its OK settles it at once,
    and the CONFIRM that follows settles 1 and 2."""
    connection, _ = attach(detached_client)
    one, two, three = sends(connection, 3)
    connection.data_received(f.Ok(3, f.Outcome.QUEUED, 2).encode())
    assert three.result() == SendOutcome(acb.Outcome.QUEUED, 2)
    assert not one.done() and not two.done()
    connection.data_received(f.Confirm(2).encode())
    assert [one.result(), two.result()] == [CONFIRMED] * 2
    assert not connection._sends
