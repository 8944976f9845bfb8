"""Reconnect through the real bus (docs/protocol.md section 5.10): after a broken connection the
client reconnects by itself and registers, subscribes, announces readiness and serves again;
commands made meanwhile wait for it; a replaced or closed client does not come back."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPOSITORY, Bus, Connect, eventually, mint_token, require_postgres, start_bus, take

import acb
from acb._frames import Welcome


def session_of(client: acb.Client) -> Welcome:
    """The WELCOME of the client's current connection: a new connection has a new one."""
    welcome = client.welcome
    assert welcome is not None
    return welcome


async def reconnected(client: acb.Client, session: Welcome, timeout: float = 20.0) -> None:
    """Waits until `client` is connected again, on a connection other than the one of `session`
    (the client sets its new connection only once the frames it pipelines at connect were
    answered). Session ids are not compared: a restarted bus counts them from 1 again."""

    async def new_session() -> bool:
        welcome = client.welcome
        return welcome is not None and welcome is not session

    await eventually(new_session, timeout)


async def listed(observer: acb.Client, agent_id: str) -> acb.AgentInfo | None:
    for info in (await observer.discover()).agents:
        if info.agent_id == agent_id:
            return info
    return None


class Gate:
    """A token function whose reconnects wait until the gate is open: it holds the client between
    its old connection and its new one for as long as a test needs."""

    def __init__(self, agent: str, tenant: str) -> None:
        self.agent = agent
        self.tenant = tenant
        self.open = asyncio.Event()
        self.open.set()
        self.waiting = asyncio.Event()

    async def token(self) -> str:
        if not self.open.is_set():
            self.waiting.set()
            await self.open.wait()
        return mint_token(self.agent, self.tenant)


GatedConnect = Callable[..., Awaitable[tuple[acb.Client, Gate]]]


@pytest.fixture
async def gated(bus: Bus, tenant: str) -> AsyncIterator[GatedConnect]:
    """Connects agents whose reconnects a test can hold back; closes them after the test."""
    clients: list[acb.Client] = []

    async def connect_gated(agent: str, **options: Any) -> tuple[acb.Client, Gate]:
        gate = Gate(agent, tenant)
        client = await acb.connect("127.0.0.1", bus.port, token=gate.token, **options)
        clients.append(client)
        return client, gate

    yield connect_gated
    for client in clients:
        await client.close()


async def test_after_a_drop_the_client_registers_subscribes_and_serves_again(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.register("worker", ["resize", "crop"], location="eu-1")
    await alice.subscribe("jobs.>")

    @alice.serve
    async def answer(request: acb.Delivery) -> str:
        return f"done: {request.text}"

    session = session_of(alice)
    alice.drop_connection()
    await reconnected(alice, session)

    info = await listed(bob, "alice")
    assert info is not None
    assert (info.status, info.description.agent_type) == (acb.AgentStatus.ONLINE, "worker")
    assert (info.description.capabilities, info.description.location) == (["resize", "crop"], "eu-1")
    await bob.publish("jobs.eu.created", "after the drop")
    [delivery] = await take(alice.deliveries(), 1)
    assert (delivery.kind, delivery.subject, delivery.text) == (
        acb.DeliveryKind.TOPIC,
        "jobs.eu.created",
        "after the drop",
    )
    response = await bob.request(acb.capability("resize"), "photo", timeout=10)
    assert (response.ok, response.sender, response.text) == (True, "alice", "done: photo")


async def test_after_a_drop_the_client_announces_its_readiness_again(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.register("worker", ["resize"])
    alice.set_readiness(acb.Readiness.BUSY)

    async def busy() -> bool:
        info = await listed(bob, "alice")
        return info is not None and info.readiness == acb.Readiness.BUSY

    await eventually(busy)
    session = session_of(alice)
    alice.drop_connection()
    await reconnected(alice, session)
    # Every new session starts ready. A PING behind the frames sent at connect: once its PONG is
    # back, the bus has read them all (the next periodic HEARTBEAT is seconds away).
    await alice.flush()
    assert await busy()
    with pytest.raises(acb.RoutingError) as raised:
        await bob.request(acb.capability("resize"), b"img", timeout=5)
    assert raised.value.code == acb.ErrorCode.NO_CAPABLE_AGENT


async def test_deliveries_not_acknowledged_at_the_drop_arrive_after_the_reconnect(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    for text in ("one", "two", "three"):
        await bob.send("alice", text)
    deliveries = alice.deliveries()
    first = await asyncio.wait_for(anext(deliveries), 10)
    assert first.text == "one"
    first.ack()
    await alice.flush()  # the ACK went out before the PING that flush waits for
    session = session_of(alice)
    alice.drop_connection()
    await reconnected(alice, session)
    await bob.send("alice", "four")
    rest = await take(deliveries, 3)
    # Delivered again, in order, once each: what the old connection had buffered was dropped.
    assert [d.text for d in rest] == ["two", "three", "four"]
    assert [d.sender for d in rest] == ["bob"] * 3


async def test_a_send_to_an_agent_while_it_is_away_is_queued_or_refused(connect: Connect, gated: GatedConnect) -> None:
    alice, gate = await gated("alice")
    bob = await connect("bob")
    await alice.register("worker")
    session = session_of(alice)
    gate.open.clear()
    alice.drop_connection()
    await gate.waiting.wait()  # reconnecting, held before HELLO

    async def offline() -> bool:
        info = await listed(bob, "alice")
        return info is not None and info.status == acb.AgentStatus.OFFLINE

    await eventually(offline)
    try:
        outcome = await bob.send("alice", "while away")
    except acb.RoutingError as refused:  # a bus without PostgreSQL keeps nothing for offline agents
        assert refused.code == acb.ErrorCode.OFFLINE
        expected = []
    else:  # with PostgreSQL it is stored for alice (5.1a)
        assert outcome is not None and outcome.outcome == acb.Outcome.QUEUED
        expected = ["while away"]
    gate.open.set()
    await reconnected(alice, session)
    await bob.send("alice", "back")
    received = await take(alice.deliveries(), len(expected) + 1)
    assert [d.text for d in received] == [*expected, "back"]


async def test_commands_made_while_the_client_reconnects_wait_for_it(connect: Connect, gated: GatedConnect) -> None:
    alice, gate = await gated("alice")
    bob = await connect("bob")
    session = session_of(alice)
    gate.open.clear()
    alice.drop_connection()
    await gate.waiting.wait()
    sending = asyncio.create_task(alice.send("bob", "made while away"))
    discovering = asyncio.create_task(alice.discover())
    subscribing = asyncio.create_task(alice.subscribe("news.>"))
    await asyncio.sleep(0.3)
    assert not sending.done() and not discovering.done() and not subscribing.done()
    gate.open.set()
    outcome = await asyncio.wait_for(sending, 10)
    assert outcome is not None and outcome.outcome == acb.Outcome.DELIVERED
    await asyncio.wait_for(discovering, 10)
    await asyncio.wait_for(subscribing, 10)
    assert session_of(alice) is not session
    [delivery] = await take(bob.deliveries(), 1)
    assert (delivery.sender, delivery.text) == ("alice", "made while away")
    await bob.publish("news.today", "subscribed while away")
    [news] = await take(alice.deliveries(), 1)
    assert news.text == "subscribed while away"


async def test_a_command_made_right_after_the_drop_waits_for_the_reconnect(connect: Connect) -> None:
    alice = await connect("alice")
    bob = await connect("bob")
    session = session_of(alice)
    alice.drop_connection()  # the client learns of it only when the loop runs connection_lost
    outcome = await asyncio.wait_for(alice.send("bob", "right after"), 30)  # a failure, never a hang
    assert outcome is not None and outcome.outcome == acb.Outcome.DELIVERED
    assert session_of(alice) is not session
    alice.drop_connection()
    assert (await asyncio.wait_for(alice.discover(), 30)).agents == []
    [delivery] = await take(bob.deliveries(), 1)
    assert delivery.text == "right after"


@pytest.fixture(scope="module")
def tls_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bus, Path]]:
    """A bus of its own that speaks TLS, and the development CA its certificate chains to."""
    certificates = tmp_path_factory.mktemp("reconnect-certs")
    subprocess.run([str(REPOSITORY / "scripts" / "dev-certs.sh"), str(certificates)], check=True, capture_output=True)
    running = start_bus("--tls-cert", str(certificates / "server.pem"), "--tls-key", str(certificates / "server.key"))
    yield running, certificates / "ca.pem"
    running.stop()
    shutil.rmtree(running.directory, ignore_errors=True)


async def test_over_tls_a_command_made_right_after_the_drop_waits_for_the_reconnect(
    tls_bus: tuple[Bus, Path], tenant: str
) -> None:
    bus, ca = tls_bus
    bob = await acb.connect("127.0.0.1", bus.port, token=mint_token("bob", tenant), ca_file=str(ca))
    alice = await acb.connect("127.0.0.1", bus.port, token=mint_token("alice", tenant), ca_file=str(ca))
    async with alice, bob:
        session = session_of(alice)
        alice.drop_connection()
        outcome = await asyncio.wait_for(alice.send("bob", "right after"), 30)  # a failure, never a hang
        assert outcome is not None and outcome.outcome == acb.Outcome.DELIVERED
        assert session_of(alice) is not session
        [delivery] = await take(bob.deliveries(), 1)
        assert delivery.text == "right after"


async def test_a_command_gives_up_when_the_reconnect_takes_longer_than_reconnect_wait(
    connect: Connect, gated: GatedConnect
) -> None:
    alice, gate = await gated("alice", reconnect_wait=0.2)
    bob = await connect("bob")
    session = session_of(alice)
    gate.open.clear()
    alice.drop_connection()
    await gate.waiting.wait()
    with pytest.raises(acb.ConnectionClosedError) as raised:
        await alice.send("bob", "too early")
    assert raised.value.code == acb.ErrorCode.UNAVAILABLE
    gate.open.set()
    await reconnected(alice, session)  # it kept trying meanwhile
    await alice.send("bob", "in time")
    [delivery] = await take(bob.deliveries(), 1)
    assert delivery.text == "in time"


async def test_a_replaced_client_does_not_reconnect_and_its_commands_raise(connect: Connect) -> None:
    old = await connect("bob")
    alice = await connect("alice")
    new = await connect("bob")  # another process of the same agent takes over
    with pytest.raises(acb.SessionEndedError) as ended:
        await take(old.deliveries(), 1)
    assert ended.value.code == acb.ErrorCode.REPLACED
    assert old._reconnecting is None  # the decision not to reconnect is taken at once
    for command in (
        lambda: old.send("alice", "x"),
        lambda: old.request("alice", "x", timeout=1),
        lambda: old.subscribe("topic"),
        lambda: old.discover(),
        lambda: old.upload("alice", b"x"),
    ):
        with pytest.raises(acb.SessionEndedError) as raised:
            await command()
        assert raised.value.code == acb.ErrorCode.REPLACED
    with pytest.raises(acb.SessionEndedError):
        await take(old.streams(), 1)
    await alice.send("bob", "to the new one")
    [delivery] = await take(new.deliveries(), 1)
    assert delivery.text == "to the new one"
    await new.flush()  # the new session goes on


async def test_without_reconnect_a_drop_ends_the_client(connect: Connect) -> None:
    alice = await connect("alice", reconnect=False)
    await connect("bob")
    alice.drop_connection()
    with pytest.raises(acb.ConnectionClosedError):
        await take(alice.deliveries(), 1)
    with pytest.raises(acb.ConnectionClosedError):
        await alice.send("bob", "x")
    assert alice._reconnecting is None


async def test_after_close_commands_raise_connection_closed(connect: Connect) -> None:
    alice = await connect("alice")
    await connect("bob")
    await alice.close()
    for command in (
        lambda: alice.send("bob", "x"),
        lambda: alice.request("bob", "x", timeout=1),
        lambda: alice.publish("topic", "x"),
        lambda: alice.subscribe("topic"),
        lambda: alice.register("worker"),
        lambda: alice.discover(),
        lambda: alice.flush(),
        lambda: alice.upload("bob", b"x"),
    ):
        with pytest.raises(acb.ConnectionClosedError) as raised:
            await command()
        assert raised.value.code == acb.ErrorCode.UNAVAILABLE
    assert [d async for d in alice.deliveries()] == []
    assert [s async for s in alice.streams()] == []
    await alice.close()  # closing again is harmless


async def test_the_client_comes_back_to_a_restarted_bus_and_registers_again(tenant: str) -> None:
    """The registry of a bus without PostgreSQL is lost when it stops: what the restarted bus knows
    of alice, she told it again."""
    first = start_bus()
    restarted: Bus | None = None
    try:
        alice = await acb.connect("127.0.0.1", first.port, token=mint_token("alice", tenant))
        async with alice:
            await alice.register("worker", ["resize"], metadata={"zone": "a"})
            await alice.subscribe("jobs.>")
            session = session_of(alice)
            await asyncio.to_thread(first.stop)
            restarted = start_bus("--port", str(first.port))
            await reconnected(alice, session, timeout=30)
            async with acb.connect("127.0.0.1", restarted.port, token=mint_token("bob", tenant)) as bob:
                info = await listed(bob, "alice")
                assert info is not None and info.status == acb.AgentStatus.ONLINE
                assert info.description.capabilities == ["resize"]
                assert info.description.metadata == [("zone", "a")]
                await bob.publish("jobs.created", "on the new bus")
                [delivery] = await take(alice.deliveries(), 1)
                assert delivery.text == "on the new bus"
    finally:
        for running in (first, restarted):
            if running is not None:
                running.stop()
                shutil.rmtree(running.directory, ignore_errors=True)


async def test_heartbeats_keep_an_idle_session_alive(tenant: str) -> None:
    """On a bus that closes a session silent for two intervals of 100 ms, an idle client keeps its session:
    without heartbeats it would get GOAWAY heartbeat_timeout and come back on a new session."""
    running = start_bus("--heartbeat-interval-ms", "100", "--missed-heartbeats", "2")
    try:
        async with acb.connect("127.0.0.1", running.port, token=mint_token("idle", tenant)) as idle:
            session = session_of(idle)
            await asyncio.sleep(1.5)  # fifteen heartbeat intervals of silence but for the heartbeats
            await idle.send("idle", "still here")
            [delivery] = await take(idle.deliveries(), 1)
            assert delivery.text == "still here"
            assert session_of(idle) == session
    finally:
        running.stop()


async def test_a_client_moves_on_to_another_node_of_its_cluster_when_its_node_dies(tenant: str) -> None:
    """Two nodes of a cluster (docs/cluster.md): a client that knows both goes on on the second when
    the first is killed, and its sends reach an agent there; a client whose first address is dead
    connects to the next."""
    require_postgres("a cluster of buses")
    name = f"py-{uuid.uuid4().hex[:8]}"
    nodes = [start_bus("--cluster", name, "--node-id", f"n{index}") for index in range(2)]
    try:
        second = ("127.0.0.1", nodes[1].port)
        bob = await acb.connect(*second, token=mint_token("bob", tenant))
        alice = await acb.connect(
            "127.0.0.1", nodes[0].port, other_nodes=[second], token=mint_token("alice", tenant), initial_backoff=0.05
        )
        async with bob, alice:

            async def routed() -> bool:
                try:
                    outcome = await alice.send("bob", "warm")
                except acb.ACBError:
                    return False
                return outcome is not None and outcome.outcome == acb.Outcome.DELIVERED

            await eventually(routed)
            session = session_of(alice)
            await asyncio.to_thread(nodes[0].crash)
            await reconnected(alice, session)
            assert session_of(alice).session_id > 0
            await alice.send("bob", "from the second node")
            async with acb.connect(
                "127.0.0.1", nodes[0].port, other_nodes=[second], token=mint_token("carol", tenant)
            ) as carol:
                await carol.send("bob", "from carol")
            texts: list[str] = []
            deliveries = bob.deliveries()
            while "from carol" not in texts:
                texts.append((await asyncio.wait_for(anext(deliveries), 20)).text)
            assert [text for text in texts if text != "warm"] == ["from the second node", "from carol"]
    finally:
        for node in nodes:
            node.stop()
            shutil.rmtree(node.directory, ignore_errors=True)
