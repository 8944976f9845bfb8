"""`acb.connect`: an agent's connection to ACB, with asyncio."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import random
import ssl
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from . import _frames as f
from ._connection import Connection, SendOutcome
from ._handled_messages import HandledMessages
from ._sealer import SealedGroup, Sealer, SealingFailure
from .contexts import Contexts
from .delivery import Delivery, Payload, Response, payload_bytes
from .errors import (
    ACBError,
    AuthenticationError,
    ConnectionClosedError,
    ErrorCode,
    ProtocolError,
    SessionEndedError,
)
from .sealing import AgentKeys, Purpose, SealError, Sealing
from .streams import IncomingStream, Progress, StreamHub, StreamSource
from .target import Target, resolve

log = logging.getLogger("acb")

RequestHandler = Callable[[Delivery], Awaitable[Payload]]
"""A request handler: gets the request, returns the reply payload; an exception it raises becomes
a reply with status `error` carrying its text."""
Handler = TypeVar("Handler", bound=RequestHandler)
TokenSource = str | Callable[[], str | Awaitable[str]]
"""A token, or a function (sync or async) that returns a fresh one on every connect."""

#: The deadline of the request being handled, which requests made while handling it inherit.
request_deadline: contextvars.ContextVar[int] = contextvars.ContextVar("acb_request_deadline", default=0)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Credentials:
    """An agent's secret (made by `acb agent create`), traded for tokens with LOGIN (4.5a)."""

    tenant: str
    agent_id: str
    secret: str


@dataclass(slots=True)
class Options:
    """How to reach the bus and how to behave; the keyword arguments of `acb.connect`."""

    host: str = "127.0.0.1"
    port: int = 7400
    #: Further nodes of the bus's cluster (docs/cluster.md), as (host, port): when a connect fails,
    #: the client tries the next address in turn (`host`:`port` first, then these).
    other_nodes: tuple[tuple[str, int], ...] = ()
    token: TokenSource | None = None
    credentials: Credentials | None = None
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    client_name: str = "acb-python"
    reconnect: bool = True
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    #: How long a command made while the client reconnects waits for the new connection.
    reconnect_wait: float = 10.0
    request_timeout: float = 30.0
    download_dir: str | None = None
    download_progress: Progress | None = None
    #: This agent's keys for end-to-end encryption (`acb.sealing`): published on every connect.
    keys: AgentKeys | None = None
    #: How long a pinned key of another agent is used before the bus is asked again whether it
    #: was rotated or revoked, in seconds.
    key_check_interval: float = 60.0
    #: Refuse plaintext deliveries (`not_sealed`) instead of handing them out.
    require_sealed: bool = False
    #: A file that keeps the pinned keys of other agents between runs (else they are pinned anew
    #: on first use in each run).
    pin_file: str | None = None


class Client:
    """An agent's connection to ACB: one long-lived TCP (or TLS) connection, protocol version 3.

    Commands (`send`, `request`, `register`, …) return once the bus answered them and raise the
    `ACBError` subclass of the bus's code when refused. Deliveries arrive on `deliveries()`,
    verified streams on `streams()`; requests go to the handler given to `serve` if there is one.
    After an unexpected disconnect the client reconnects with exponential backoff and registers,
    subscribes, announces readiness, watches its contexts and resumes its uploads again; commands
    made meanwhile wait up to `reconnect_wait` seconds for the new connection.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self._connection: Connection | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._failure: ACBError | None = None
        self._description: f.AgentDescription | None = None
        self._patterns: list[str] = []
        self._readiness = f.Readiness.READY
        self._handler: RequestHandler | None = None
        self._refresh_token: str | None = None
        self._inbox: deque[Delivery] = deque()
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._in_hand: set[Delivery] = set()
        #: Stored messages the application acknowledged: their redeliveries are not handed out again.
        #: The client's, not a connection's: a redelivery comes after a reconnect or a restart.
        self._handled_messages = HandledMessages()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        #: Which of the addresses (`host`:`port`, then `other_nodes`) the client connects to now.
        self._address = 0
        self._streams = StreamHub(self)
        self.contexts: Contexts = Contexts(self)
        """Shared contexts: write, read, list and watch them (section 5.13)."""
        self._sealer = Sealer(self, options.keys, options.key_check_interval, options.require_sealed, options.pin_file)

    # MARK: connecting

    @property
    def _addresses(self) -> list[tuple[str, int]]:
        return [(self.options.host, self.options.port), *self.options.other_nodes]

    async def _start(self) -> Client:
        # Each address once, in turn, before giving up.
        for attempt in range(len(self._addresses)):
            try:
                await self._establish()
                break
            except OSError:
                if attempt == len(self._addresses) - 1:
                    raise
        return self

    async def _establish(self) -> None:
        """Connects to the current address; one that cannot be reached (or drops the connection
        before WELCOME) makes the next address the current one."""
        options = self.options
        host, port = self._addresses[self._address % len(self._addresses)]
        try:
            connection = await Connection.open(self, host, port, options.tls, options.server_hostname)
        except OSError:
            self._address += 1
            raise
        try:
            token = await self._token(connection)
            answers: list[asyncio.Future[f.Frame]] = []
            pipelined: list[bytes] = []

            def pipeline(build: Callable[[int], bytes]) -> None:
                ref = connection.next_ref()
                answers.append(connection.expect(ref))
                pipelined.append(build(ref))

            keys = self._sealer.keys
            if keys is not None:
                public = keys.public
                pipeline(lambda ref: f.KeyPublish(ref, public.box_key, public.sign_key).encode())
            if self._description is not None:
                description = self._description
                pipeline(lambda ref: f.Register(ref=ref, description=description).encode())
            for pattern in self._patterns:
                pipeline(partial(_subscribe, pattern))
            if self._readiness != f.Readiness.READY:
                pipelined.append(f.Heartbeat(readiness=self._readiness).encode())
            welcome = await connection.hello(token, options.client_name, pipelined)
            for answer in answers:
                await answer
        except BaseException:
            connection.abort()
            raise
        self._connection = connection
        self._connected.set()
        self._heartbeat = asyncio.create_task(self._beat(connection, welcome.heartbeat_interval_ms / 1000))
        self.contexts._reconnected()
        log.debug("connected as %s/%s, session %d", welcome.tenant, welcome.agent_id, welcome.session_id)

    async def _token(self, connection: Connection) -> str:
        """The token for HELLO: given, made by the token function, or traded for (4.5a)."""
        options = self.options
        if options.credentials is None:
            source = options.token
            if source is None:
                raise ValueError("acb.connect needs a token or credentials (tenant, agent_id, secret)")
            if isinstance(source, str):
                return source
            token = source()
            return token if isinstance(token, str) else await token
        if self._refresh_token is not None:
            try:
                tokens = await connection.trade(f.Refresh(refresh_token=self._refresh_token))
            except AuthenticationError:
                # A stale or revoked refresh family: log in again on a new connection.
                self._refresh_token = None
                raise
        else:
            credentials = options.credentials
            tokens = await connection.trade(
                f.Login(tenant=credentials.tenant, agent_id=credentials.agent_id, secret=credentials.secret)
            )
        self._refresh_token = tokens.refresh_token
        return tokens.access_token

    async def _beat(self, connection: Connection, interval: float) -> None:
        while connection.is_open:
            await asyncio.sleep(interval)
            connection.write(f.Heartbeat(readiness=self._readiness).encode())

    async def _current(self) -> Connection:
        """The live connection, waiting up to `reconnect_wait` for one while the client reconnects."""
        connection = self._connection
        if connection is not None and connection.is_open:
            return connection
        try:
            async with asyncio.timeout(self.options.reconnect_wait):
                while True:
                    self._check_usable()
                    connection = self._connection
                    if connection is not None and connection.is_open:
                        return connection
                    if connection is not None and connection.error is None:
                        await connection.ended()  # closing: its end starts the reconnect
                    else:
                        await self._connected.wait()
        except TimeoutError:
            self._check_usable()
            raise ConnectionClosedError(ErrorCode.UNAVAILABLE, "not connected to the bus") from None

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ConnectionClosedError(ErrorCode.UNAVAILABLE, "the client is closed")

    # MARK: FrameListener

    def frame_received(self, connection: Connection, frame: f.Frame) -> None:
        if isinstance(frame, f.Deliver):
            message_id = frame.message_id
            if message_id and message_id in self._handled_messages:
                # Handled already; the bus did not learn it in time (it restarted, or the ACK was lost).
                log.debug("message %d delivered again after it was acknowledged: acknowledged again", message_id)
                connection.acks.finish(frame.delivery_id)
                return
            delivery = Delivery(frame, connection, self)
            if self._sealer.opens:
                self._sealer.receive(delivery, self._route)
            else:
                self._route(delivery)
        elif isinstance(frame, (f.StreamOpen, f.StreamChunk, f.StreamEnd, f.StreamAbort, f.StreamStatus)):
            self._streams.frame_received(connection, frame)
        elif isinstance(frame, (f.ContextEvent, f.ContextWatching, f.Error)):
            self.contexts._frame_received(frame)

    def _route(self, delivery: Delivery) -> None:
        if delivery.kind == f.DeliveryKind.REQUEST and self._handler is not None:
            self._spawn(self._answer(delivery, self._handler))
        else:
            self._inbox.append(delivery)
            self._wake_inbox()

    def connection_ended(self, connection: Connection, error: ACBError) -> None:
        if connection is not self._connection:
            return
        self._connected.clear()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        # Deliveries not handed out yet are delivered again to the next session, with new ids.
        self._inbox = deque(d for d in self._inbox if d._connection is not connection)
        self._streams.connection_ended(connection)
        if self._closed:
            return
        if not self._recoverable(error):
            self._fail(error)
            return
        log.info("connection to the bus lost (%s); reconnecting", error)
        self._reconnecting = asyncio.create_task(self._reconnect())

    def _recoverable(self, error: ACBError) -> bool:
        if not self.options.reconnect:
            return False
        if isinstance(error, SessionEndedError):
            if error.code == ErrorCode.REPLACED:
                return False  # another process of this agent took over: it is the one to go on
            if error.code == ErrorCode.UNAUTHENTICATED:
                # The access token expired: a client that can get a new one reconnects with it.
                return self.options.credentials is not None or callable(self.options.token)
            return error.code not in (ErrorCode.BAD_FRAME, ErrorCode.TOO_LARGE)
        return not isinstance(error, ProtocolError)

    async def _reconnect(self) -> None:
        """Connects again after a pause, doubled after each round that failed. In a round every
        address is tried once, one after the other: a node that cannot be reached (it died) hands
        over to the next at once; an answer of the bus (a refused token) ends the round."""
        options = self.options
        backoff = options.initial_backoff
        while not self._closed:
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            for _ in self._addresses:
                refreshing = self._refresh_token is not None
                try:
                    await self._establish()
                    log.info("reconnected to the bus")
                    return
                except AuthenticationError as error:
                    if not refreshing:
                        self._fail(error)  # the token, or the secret itself, is refused
                        return
                    log.warning("refresh refused (%s); logging in again", error)
                    break
                except OSError as error:
                    log.debug("reconnect failed: %s", error)
                except ACBError as error:
                    log.debug("reconnect failed: %s", error)
                    break
                except Exception as error:  # the token function failed: try again, as after a network error
                    log.warning("reconnect failed: the token function raised %r", error)
                    break
                if self._closed:
                    return
            backoff = min(backoff * 2, options.max_backoff)

    def _fail(self, error: ACBError) -> None:
        """Ends the client for good: commands and iterations raise `error` from now on."""
        self._failure = error
        self._connected.set()  # wakes commands waiting for a connection, which then raise
        self._wake_inbox()
        self._streams.fail(error)
        self.contexts._fail(error)

    # MARK: registry

    async def register(
        self,
        agent_type: str,
        capabilities: list[str] | tuple[str, ...] = (),
        *,
        location: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Publishes this agent's description to the registry, and again after each reconnect."""
        description = f.AgentDescription(
            agent_type=agent_type,
            capabilities=list(capabilities),
            location=location,
            metadata=list((metadata or {}).items()),
        )
        await self._call(lambda ref: f.Register(ref=ref, description=description).encode())
        self._description = description

    async def unregister(self) -> None:
        await self._call(lambda ref: f.Unregister(ref=ref).encode())
        self._description = None

    async def discover(
        self,
        *,
        agent_type: str = "",
        capability: str = "",
        status: f.AgentStatus = f.AgentStatus.ANY,
        cursor: str = "",
        limit: int = 0,
    ) -> f.Discovered:
        """One page of the tenant's registered agents (`agents`, `next_cursor`); pass the cursor
        for the next page."""
        answer = await self._call(
            lambda ref: f.Discover(
                ref=ref, agent_type=agent_type, capability=capability, status=status, cursor=cursor, limit=limit
            ).encode()
        )
        assert isinstance(answer, f.Discovered)
        return answer

    async def agents(
        self, *, agent_type: str = "", capability: str = "", status: f.AgentStatus = f.AgentStatus.ANY
    ) -> AsyncIterator[f.AgentInfo]:
        """Every registered agent that matches, page after page."""
        cursor = ""
        while True:
            page = await self.discover(agent_type=agent_type, capability=capability, status=status, cursor=cursor)
            for info in page.agents:
                yield info
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def set_readiness(self, readiness: f.Readiness) -> None:
        """Announces readiness now and with every heartbeat: capability routing skips busy and
        draining agents (5.3, 5.7)."""
        self._readiness = readiness
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.write(f.Heartbeat(readiness=readiness).encode())

    # MARK: messages

    async def send(
        self,
        target: Target | str,
        payload: Payload,
        *,
        idempotency_key: str = "",
        deadline_ms: int = 0,
        confirm: bool = True,
        durable: bool = False,
        sealed: Sealing | None = None,
    ) -> SendOutcome | None:
        """Sends a payload to one agent, by id (a `str` or `acb.agent(id)`) or by capability
        (`acb.capability(name)`).

        `sealed` (`"box"` or `"anonymous"`) encrypts it end to end for the agent the target names
        (`acb.sealing`); it needs the client's `keys`, and an agent by id.

        With `confirm` (the default) it returns once the bus settled it: outcome `delivered` (in the
        receiver's queue) or `queued` (stored for an offline agent). Without, it returns once the
        frame is written within the send window, the way NATS publishes: `flush()` then waits for
        everything sent so far and raises the first failure among those.

        `durable` asks the bus to store the message in PostgreSQL before it answers, even when the
        receiver is online: it is settled as `queued` (recipients 1) once committed, and survives a
        crash of the bus. A bus without PostgreSQL refuses it with `unavailable`.
        """
        kind, name = resolve(target)
        data = payload_bytes(payload)
        if sealed is not None:
            data = (await self._sealer.seal(kind, name, bytes(data), sealed, Purpose.MESSAGE))[0]
        deadline = deadline_ms or request_deadline.get()
        flags = f.MessageFlags.DURABLE if durable else 0
        connection = self._sending() or await self._wait_for_credit()
        ref = connection.next_send_ref()
        frame = f.encode_send(f.SEND, ref, kind, name.encode(), idempotency_key.encode(), deadline, data, flags)
        waiter = connection.send_frame(ref, frame, confirm)
        return await waiter if waiter is not None else None

    async def broadcast(
        self,
        payload: Payload,
        *,
        deadline_ms: int = 0,
        confirm: bool = True,
        durable: bool = False,
        group: str | None = None,
    ) -> SendOutcome | None:
        """Sends to every other connected agent of the tenant (5.6). `durable`: as for `send`, a
        stored copy for each receiver; `recipients` counts the copies. `group` (`owner/name`) seals
        it with that group's newest key: only its members open it."""
        if group is not None:
            payload = self._sealer.seal_for_group(bytes(payload_bytes(payload)), group)
        return await self._fanout(f.BROADCAST, b"", payload, deadline_ms, confirm, durable)

    async def publish(
        self,
        topic: str,
        payload: Payload,
        *,
        deadline_ms: int = 0,
        confirm: bool = True,
        durable: bool = False,
        group: str | None = None,
    ) -> SendOutcome | None:
        """Publishes on a topic to every session subscribed to a matching pattern (5.8). `durable`:
        as for `send`, a stored copy for each subscriber; `recipients` counts the copies. `group`:
        sealed with that group's newest key, as for `broadcast`."""
        if group is not None:
            payload = self._sealer.seal_for_group(bytes(payload_bytes(payload)), group)
        return await self._fanout(f.PUBLISH, topic.encode(), payload, deadline_ms, confirm, durable)

    async def _fanout(
        self, frame_type: int, topic: bytes, payload: Payload, deadline_ms: int, confirm: bool, durable: bool
    ) -> SendOutcome | None:
        data = payload_bytes(payload)
        flags = f.MessageFlags.DURABLE if durable else 0
        connection = self._sending() or await self._wait_for_credit()
        ref = connection.next_send_ref()
        frame = f.encode_fanout(frame_type, ref, topic, deadline_ms, data, flags)
        waiter = connection.send_frame(ref, frame, confirm)
        return await waiter if waiter is not None else None

    def _sending(self) -> Connection | None:
        """The fast path of a send (5.2a): an open connection with credit, taken at once; None
        when the send must wait for credit or for a connection."""
        connection = self._connection
        if connection is not None and connection.credit > 0 and connection.is_open:
            connection.credit -= 1
            return connection
        return None

    async def _wait_for_credit(self) -> Connection:
        connection = await self._current()
        await connection.take_credit()
        return connection

    async def flush(self) -> None:
        """Waits until the bus settled every send, broadcast and publish made so far; raises the
        first failure of those made with `confirm=False` since the last flush."""
        connection = await self._current()
        await connection.flush()

    async def subscribe(self, pattern: str) -> None:
        """Subscribes to a topic pattern (`*` one token, `>` the rest); matching publications arrive
        on `deliveries()`. Subscriptions are made again after each reconnect."""
        await self._call(lambda ref: f.Subscribe(ref=ref, pattern=pattern).encode())
        if pattern not in self._patterns:
            self._patterns.append(pattern)

    async def unsubscribe(self, pattern: str) -> None:
        await self._call(lambda ref: f.Unsubscribe(ref=ref, pattern=pattern).encode())
        if pattern in self._patterns:
            self._patterns.remove(pattern)

    def deliveries(self) -> AsyncIterator[Delivery]:
        """Messages delivered to this agent (direct, broadcast, topic, and requests when no handler
        is set), as an async iterator. Asking for the next one acknowledges the previous one."""
        return _Deliveries(self)

    async def _next_delivery(self) -> Delivery | None:
        while not self._inbox:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                return None
            if self._inbox_waiter is None:
                self._inbox_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._inbox_waiter)  # shared by every iteration that waits
        delivery = self._inbox.popleft()
        self._in_hand.add(delivery)
        return delivery

    def _released(self, delivery: Delivery) -> None:
        self._in_hand.discard(delivery)

    def _acknowledged(self, delivery: Delivery) -> None:
        self._in_hand.discard(delivery)
        if delivery.message_id:
            self._handled_messages.add(delivery.message_id)

    def _wake_inbox(self) -> None:
        waiter, self._inbox_waiter = self._inbox_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # MARK: requests

    async def request(
        self,
        target: Target | str,
        payload: Payload,
        *,
        timeout: float | None = None,
        idempotency_key: str = "",
        sealed: bool = False,
    ) -> Response:
        """Asks one agent and waits for its answer.

        With `sealed`, the request is sealed (a box) for the agent the target names, and its reply
        must come sealed from that agent, bound to this request (else `SealError`).

        The deadline is `timeout` seconds from now (default `request_timeout`), or what is left of
        the request being handled, if sooner. A reply with status `error` is returned (see
        `Response.ok`); bus failures raise: `RequestTimeoutError` when no reply came in time, and
        the routing errors of `send`.
        """
        kind, name = resolve(target)
        deadline = now_ms() + int(1000 * (self.options.request_timeout if timeout is None else timeout))
        inherited = request_deadline.get()
        if inherited:
            deadline = min(deadline, inherited)
        name_bytes = name.encode()
        key = idempotency_key.encode()
        data = payload_bytes(payload)
        nonce = b""
        if sealed:
            data, nonce = await self._sealer.seal(kind, name, bytes(data), "box", Purpose.REQUEST)
        answer = await self._call(lambda ref: f.encode_send(f.REQUEST, ref, kind, name_bytes, key, deadline, data))
        assert isinstance(answer, f.Response)
        opened = await self._sealer.open_reply(answer, name, nonce) if sealed else bytes(answer.payload)
        return Response(answer.from_, f.ReplyStatus(answer.status), opened)

    def serve(self, handler: Handler) -> Handler:
        """Answers requests with `handler`, one task per request (bounded by the bus's unacked
        window); each request is acknowledged once its reply is written. Usable as a decorator."""
        self._handler = handler
        return handler

    async def _answer(self, delivery: Delivery, handler: RequestHandler) -> None:
        request_deadline.set(delivery.deadline_ms)
        try:
            result = await handler(delivery)
        except Exception as error:  # the responder's failure travels to the requester
            log.debug("request handler failed: %r", error)
            delivery.reply(str(error) or type(error).__name__, error=True)
            return
        delivery.reply(result)

    # MARK: end-to-end encryption

    @property
    def key_fingerprint(self) -> str | None:
        """This agent's key fingerprint, to compare out of band; None without keys."""
        keys = self._sealer.keys
        return keys.public.fingerprint if keys is not None else None

    async def peer_fingerprint(self, agent: str) -> str:
        """The fingerprint of `agent`'s keys as this client pins them, fetched (and pinned on
        first use) from the bus. Raises `SealError` (`key_changed`, `key_revoked`), or the bus's
        `no_key`."""
        return (await self._sealer.peer_keys(agent, refresh=True)).fingerprint

    async def trust_keys(self, agent: str, fingerprint: str) -> None:
        """Pins `agent`'s keys as the bus has them now, if their fingerprint is `fingerprint`: what
        to do after `key_changed`, once the new fingerprint is checked out of band."""
        await self._sealer.trust(agent, fingerprint)

    async def sealed_group(self, name: str, members: set[str] | list[str]) -> SealedGroup:
        """Makes a group key named `name` (this agent is its owner; the group's id is
        `agent_id/name`) and gives it, sealed, to each of `members`."""
        if not self.agent_id:
            raise ConnectionClosedError(ErrorCode.UNAVAILABLE, "not connected: the group's id names its owner")
        group = SealedGroup(self._sealer, name, self.agent_id, set(members))
        await group.rotate()
        return group

    async def rotate_keys(self, new_keys: AgentKeys) -> None:
        """Replaces this agent's keys with `new_keys`, signed by the current ones so that every peer
        accepts them; what was sealed to the old keys still opens. Save them for the next start:
        `new_keys.write(path)` to a new file, then rename it over the old one."""
        rotation = self._sealer.own().sign(new_keys.public.rotation_message)
        public = new_keys.public
        await self._call(lambda ref: f.KeyPublish(ref, public.box_key, public.sign_key, rotation).encode())
        self._sealer.rotated(new_keys)

    def forget_keys(self, agent: str) -> None:
        """Forgets the keys pinned for `agent`: the next ones the bus hands out are pinned on first use."""
        self._sealer.ring.forget(agent)

    def sealing_failures(self) -> AsyncIterator[SealingFailure]:
        """Deliveries this client refused to open (NACKed, never handed out), with their `SealError`;
        the newest 1,024 are kept until read."""
        return self._sealer.failures()

    # MARK: streams

    async def upload(
        self,
        target: Target | str,
        source: StreamSource,
        *,
        stream_id: str | None = None,
        progress: Progress | None = None,
        deadline_ms: int = 0,
        sealed: bool = False,
    ) -> f.Ok:
        """Uploads a payload of any size (bytes, or a file path) to an agent as a chunked stream
        with its SHA-256 (5.9), a few chunks ahead of what the bus stored. If the connection
        breaks, it waits for the reconnect, asks the bus how far it got (STREAM_RESUME) and sends
        the rest. `progress(stream_id, bytes_stored, total)` follows it. Returns the bus's OK once
        the stream is verified and queued for the receiver.

        With `sealed`, the stream is sealed end to end for the agent `target` names (its keys'
        `crypto_secretstream`, 1 MiB messages each authenticated, then an empty final one): written
        sealed to a file in the temporary folder first, uploaded from it (so a resume sends the same
        bytes), then deleted. The receiving client opens it, authenticating every message."""
        kind, name = resolve(target)
        if not sealed:
            return await self._streams.upload(Target(kind, name), source, stream_id, progress, deadline_ms)
        if kind != f.TargetKind.AGENT:
            raise SealError("needs_agent", "sealing needs an agent by id: a capability names no keys")
        path = await self._sealer.seal_upload(source, name, tempfile.gettempdir())
        try:
            return await self._streams.upload(Target(kind, name), path, stream_id, progress, deadline_ms)
        finally:
            os.unlink(path)

    def streams(self) -> AsyncIterator[IncomingStream]:
        """Streams delivered to this agent, verified and written to files, as an async iterator.
        Asking for the next one acknowledges the previous one."""
        return self._streams.iterate()

    # MARK: closing

    async def close(self) -> None:
        """Closes the connection for good (no reconnect), acknowledging first every delivery the
        application was handed; those it was not handed are delivered again to the next session."""
        if self._closed:
            return
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        for task in list(self._tasks):
            task.cancel()
        for delivery in list(self._in_hand):
            delivery.ack()
        self._streams.close()
        self.contexts._close()
        self._sealer.close()
        connection = self._connection
        if connection is not None:
            connection.close()  # writes the ACKs just made first
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self._wake_inbox()
        self._connected.set()

    async def logout(self) -> None:
        """Revokes this agent's tokens (the session's access token and, after a LOGIN, its whole
        refresh family), then closes for good."""
        try:
            connection = await self._current()  # waits for a reconnect under way, like any command
            self._closed = True  # the GOAWAY `unauthenticated` after the OK must not reconnect
            await connection.call(lambda ref: f.Logout(ref=ref).encode())
        finally:
            self._closed = False
            await self.close()

    def drop_connection(self) -> None:
        """Cuts the TCP connection without GOAWAY, as a network failure would (for tests and demos
        of reconnect and resume)."""
        if self._connection is not None:
            self._connection.abort()

    @property
    def welcome(self) -> f.Welcome | None:
        """What the bus said in WELCOME on the current connection."""
        return self._connection.welcome if self._connection is not None else None

    @property
    def agent_id(self) -> str:
        welcome = self.welcome
        return welcome.agent_id if welcome is not None else ""

    @property
    def tenant(self) -> str:
        welcome = self.welcome
        return welcome.tenant if welcome is not None else ""

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    # MARK: internals

    async def _call(self, build: Callable[[int], bytes]) -> f.Frame:
        connection = await self._current()
        return await connection.call(build)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _subscribe(pattern: str, ref: int) -> bytes:
    return f.Subscribe(ref=ref, pattern=pattern).encode()


class _Deliveries:
    """The async iterator of `Client.deliveries()`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._previous: Delivery | None = None

    def __aiter__(self) -> _Deliveries:
        return self

    async def __anext__(self) -> Delivery:
        previous = self._previous
        if previous is not None and not previous.settled:
            previous.ack()
        client = self._client
        delivery: Delivery | None
        if client._inbox:  # the fast path: a delivery is waiting, no coroutine to await
            delivery = client._inbox.popleft()
            client._in_hand.add(delivery)
        else:
            delivery = await client._next_delivery()
        self._previous = delivery
        if delivery is None:
            raise StopAsyncIteration
        return delivery


class Connecting:
    """What `acb.connect(...)` returns: await it for a connected `Client`, or use it as an async
    context manager that closes the client on exit."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return Client(self._options)._start().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self
        return self._client

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    host: str = "127.0.0.1",
    port: int = 7400,
    *,
    other_nodes: Sequence[tuple[str, int]] = (),
    token: TokenSource | None = None,
    tenant: str | None = None,
    agent_id: str | None = None,
    secret: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    client_name: str = "acb-python",
    reconnect: bool = True,
    initial_backoff: float = 0.1,
    max_backoff: float = 5.0,
    reconnect_wait: float = 10.0,
    request_timeout: float = 30.0,
    download_dir: str | None = None,
    download_progress: Progress | None = None,
    keys: AgentKeys | None = None,
    key_check_interval: float = 60.0,
    require_sealed: bool = False,
    pin_file: str | None = None,
) -> Connecting:
    """Connects an agent to the bus: `client = await acb.connect(...)` or
    `async with acb.connect(...) as client:`.

    Authenticate with `token` (a JWT, or a function returning a fresh one), or with `tenant`,
    `agent_id` and `secret`, which the client trades for tokens (LOGIN) and renews by itself
    (REFRESH). TLS: `ca_file` (the CA the bus's certificate chains to) and, for mTLS, `cert_file`
    and `key_file`; or a ready `tls` context. After a lost connection it reconnects (unless
    `reconnect` is False) with backoff from `initial_backoff` doubling to `max_backoff` seconds;
    commands wait up to `reconnect_wait` seconds for the new connection. `keys` (`acb.AgentKeys`)
    turn on end-to-end encryption (`acb.sealing`). `other_nodes` lists further nodes of the bus's
    cluster, as (host, port): a connect that fails moves on to the next address in turn.
    """
    if tls is None and (ca_file or cert_file):
        tls = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            tls.load_cert_chain(cert_file, key_file)
    credentials = None
    if secret is not None:
        if tenant is None or agent_id is None:
            raise ValueError("a secret needs its tenant and agent_id")
        credentials = Credentials(tenant, agent_id, secret)
    return Connecting(
        Options(
            host=host,
            port=port,
            other_nodes=tuple(other_nodes),
            token=token,
            credentials=credentials,
            tls=tls,
            server_hostname=server_hostname,
            client_name=client_name,
            reconnect=reconnect,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            reconnect_wait=reconnect_wait,
            request_timeout=request_timeout,
            download_dir=download_dir,
            download_progress=download_progress,
            keys=keys,
            key_check_interval=key_check_interval,
            require_sealed=require_sealed,
            pin_file=pin_file,
        )
    )
