"""One TCP or TLS connection to the bus: framing, the handshake, answers to commands, and the
bookkeeping protocol versions 2 and 3 ask of a client (send credit, CONFIRM, cumulative ACKs)."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from . import _frames as f
from ._acks import AckTracker
from .errors import (
    ACBError,
    ConnectionClosedError,
    ErrorCode,
    ProtocolError,
    SessionEndedError,
    error_from,
)

#: The version this client speaks in HELLO: 3 adds the durable flag and DELIVER's message_id.
PROTOCOL_VERSION = 3
#: Largest frame this client reads (its own limit, section 2.1): a full chunk, an inline context
#: body with its head, or a page of heads all fit well below it.
MAX_FRAME_BYTES = 8 * 1024 * 1024
#: Frames up to this size are gathered and written once per event-loop turn; bigger ones at once.
_GATHER_LIMIT = 64 * 1024
_HEADER = f.HEADER


class FrameListener(Protocol):
    """Who hears the frames that answer no command of this connection (deliveries, downloads,
    context events, progress reports, an ERROR ending a watch) and the end of the connection."""

    def frame_received(self, connection: Connection, frame: f.Frame) -> None: ...

    def connection_ended(self, connection: Connection, error: ACBError) -> None: ...


@dataclass(slots=True, frozen=True)
class SendOutcome:
    """How the bus settled a SEND, BROADCAST or PUBLISH: outcome `delivered`, or `queued` (stored in
    PostgreSQL: durable, or a SEND for an offline agent), and the receivers counted (the stored copies
    when queued; None when a CONFIRM settled it: the bus does not count them then)."""

    outcome: f.Outcome
    recipients: int | None


class Connection(asyncio.Protocol):
    """The protocol object of one connection. Every command gets the next ref, counting up from 1,
    which meets the increasing-ref rule of SEND, BROADCAST and PUBLISH (4.5b)."""

    def __init__(self, listener: FrameListener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.welcome: f.Welcome | None = None
        self.error: ACBError | None = None
        self.acks = AckTracker(self.write, self._schedule_write_out)
        self._next_ref = 1
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._writable: asyncio.Future[None] | None = None
        self._handshake: asyncio.Future[f.Frame] | None = None
        self._pending: dict[int, asyncio.Future[f.Frame]] = {}
        # Protocol 2: credit, and the SEND/BROADCAST/PUBLISH refs not yet settled, in order.
        self.credit = 0
        self._credit_waiter: asyncio.Future[None] | None = None
        self._sends: deque[int] = deque()
        self._send_waiters: dict[int, asyncio.Future[SendOutcome]] = {}
        self._settled_early: set[int] = set()
        self._drained: asyncio.Future[None] | None = None
        #: The first failure of a send nobody waits for, raised by the next `flush`.
        self.unconfirmed_error: ACBError | None = None
        self._ended: set[asyncio.Future[None]] = set()
        # Context bodies over the inline limit: the CONTEXT that announced them, and their chunks.
        self._bodies: dict[str, tuple[f.Context, list[bytes]]] = {}

    # MARK: opening

    @classmethod
    async def open(
        cls,
        listener: FrameListener,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: cls(listener),
            host,
            port,
            ssl=tls,
            server_hostname=(server_hostname or host) if tls else None,
        )
        return connection

    async def trade(self, frame: f.Login | f.Refresh) -> f.Tokens:
        """LOGIN or REFRESH before HELLO: the tokens, or the bus's refusal (it then closes)."""
        answer = await self._handshake_step(frame.encode())
        if not isinstance(answer, f.Tokens):
            raise ProtocolError(ErrorCode.BAD_FRAME, f"expected TOKENS, got {type(answer).__name__}")
        return answer

    async def hello(self, token: str, client_name: str, pipelined: Iterable[bytes] = ()) -> f.Welcome:
        """HELLO, with the frames a session needs right behind it in the same write (3.4)."""
        first = f.Hello(version=PROTOCOL_VERSION, token=token, client_name=client_name).encode()
        answer = await self._handshake_step(b"".join((first, *pipelined)))
        if not isinstance(answer, f.Welcome):
            raise ProtocolError(ErrorCode.BAD_FRAME, f"expected WELCOME, got {type(answer).__name__}")
        self.welcome = answer
        return answer

    async def _handshake_step(self, frames: bytes) -> f.Frame:
        self._handshake = self.loop.create_future()
        self.write(frames)
        return await self._handshake

    # MARK: commands

    def next_ref(self) -> int:
        ref = self._next_ref
        self._next_ref = ref + 1
        return ref

    def call(self, build: Callable[[int], bytes]) -> asyncio.Future[f.Frame]:
        """Writes the command `build(ref)` makes and returns the future of its answer."""
        self._check_open()
        ref = self.next_ref()
        future: asyncio.Future[f.Frame] = self.loop.create_future()
        self._pending[ref] = future
        self.write(build(ref))
        return future

    def expect(self, ref: int) -> asyncio.Future[f.Frame]:
        """The future of the answer to a command already written with `ref` (pipelined at HELLO)."""
        future: asyncio.Future[f.Frame] = self.loop.create_future()
        self._pending[ref] = future
        return future

    async def take_credit(self) -> None:
        """Waits until the send window has room (5.2): credit is above 0."""
        while self.credit <= 0:
            self._check_open()
            if self._credit_waiter is None:
                self._credit_waiter = self.loop.create_future()
            await asyncio.shield(self._credit_waiter)  # shared: one waiter cancelled cancels no other
        self.credit -= 1

    def next_send_ref(self) -> int:
        """The ref of a SEND, BROADCAST or PUBLISH about to be written: kept in order to settle."""
        ref = self._next_ref
        self._next_ref = ref + 1
        self._sends.append(ref)
        return ref

    def send_frame(self, ref: int, frame: bytes, confirm: bool) -> asyncio.Future[SendOutcome] | None:
        """Writes a SEND, BROADCAST or PUBLISH encoded with `next_send_ref()` (credit taken). With
        `confirm`, the future settles on its CONFIRM, OK or ERROR; without, a failure is kept for
        the next `flush`. A command the bus stores (durable, or for an offline agent) is answered by
        its own OK or ERROR: the bus sends no CONFIRM covering it before that answer (4.5b)."""
        future: asyncio.Future[SendOutcome] | None = None
        if confirm:
            future = self.loop.create_future()
            self._send_waiters[ref] = future
        self.write(frame)
        return future

    async def flush(self) -> None:
        """PING, then wait until every SEND, BROADCAST and PUBLISH written before it is settled
        (4.5b). Raises the first failure of a send written without `confirm` since the last flush."""
        pong = self.call(lambda ref: f.Ping(ref=ref).encode())
        await pong
        while self._sends:
            if self._drained is None:
                self._drained = self.loop.create_future()
            await asyncio.shield(self._drained)
        error, self.unconfirmed_error = self.unconfirmed_error, None
        if error is not None:
            raise error

    # MARK: writing

    def write(self, frame: bytes) -> None:
        """Queues a frame; queued frames go out in one write at the end of this event-loop turn."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(frame) >= _GATHER_LIMIT:
            self._write_out()
            transport.write(frame)
            return
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._write_out)

    def _schedule_write_out(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        if self.acks.pending:
            self.acks.flush()  # the ACKs of this turn go in the same write as the frames
        self._flush_scheduled = False
        out = self._out
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    async def writable(self) -> None:
        """Waits while the socket's send buffer is above its high-water mark."""
        while self._writable is not None:
            await asyncio.shield(self._writable)
        self._check_open()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self._write_out()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Cuts the connection at once, as a network failure would."""
        if self.transport is not None:
            self.transport.abort()

    def ended(self) -> asyncio.Future[None]:
        """A future that completes when the connection ends (cancel it when no longer needed)."""
        future: asyncio.Future[None] = self.loop.create_future()
        if self.error is not None:
            future.set_result(None)
        else:
            self._ended.add(future)
            future.add_done_callback(self._ended.discard)
        return future

    @property
    def is_open(self) -> bool:
        return self.error is None and self.transport is not None and not self.transport.is_closing()

    def _check_open(self) -> None:
        if self.error is not None:
            raise self.error
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosedError(ErrorCode.UNAVAILABLE, "the connection is closed")

    # MARK: reading

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            source = data
        size = len(source)
        position = 0
        with memoryview(source) as view:
            while size - position >= 5:
                length, frame_type = _HEADER.unpack_from(source, position)
                if length > MAX_FRAME_BYTES or length == 0:
                    self._fail(
                        ProtocolError(
                            ErrorCode.TOO_LARGE if length else ErrorCode.BAD_FRAME,
                            f"the bus sent a frame of {length} bytes",
                        )
                    )
                    return
                end = position + 4 + length
                if end > size:
                    break
                try:
                    frame = f.decode(frame_type, view[position + 5 : end])
                except f.FrameError as error:
                    self._fail(ProtocolError(ErrorCode.BAD_FRAME, f"undecodable frame from the bus: {error}"))
                    return
                position = end
                self._dispatch(frame)
        if source is buffer:
            del buffer[:position]
        elif position < size:
            buffer += memoryview(data)[position:]

    def _dispatch(self, frame: f.Frame) -> None:
        if isinstance(frame, f.Deliver):
            self.acks.received(frame.delivery_id)
            self.listener.frame_received(self, frame)
        elif isinstance(frame, f.Confirm):
            self._confirm(frame.ref)
        elif isinstance(frame, f.Credit):
            self._grant(frame.grant)
        elif isinstance(frame, f.Ok):
            if not self._settle_send(frame.ref, frame, None):
                self._answer(frame.ref, frame)
        elif isinstance(frame, f.Error):
            self._error(frame)
        elif isinstance(frame, (f.Response, f.Pong, f.Discovered, f.ContextPage, f.Key)):
            self._answer(frame.ref, frame)
        elif isinstance(frame, f.ContextWatching):
            self.listener.frame_received(self, frame)  # the watch learns its position before any event
            self._answer(frame.ref, frame)
        elif isinstance(frame, f.Context):
            if frame.status == f.ContextStatus.STREAMED and frame.ref in self._pending:
                self._bodies[f"context/{frame.ref}"] = (frame, [])
            else:
                self._answer(frame.ref, frame)
        elif isinstance(frame, f.StreamChunk) and frame.stream_id in self._bodies:
            self._bodies[frame.stream_id][1].append(frame.data)
        elif isinstance(frame, f.StreamEnd) and frame.stream_id in self._bodies:
            head, chunks = self._bodies.pop(frame.stream_id)
            head.body = b"".join(chunks)
            self._answer(head.ref, head)
        elif isinstance(frame, f.StreamStatus) and frame.ref != 0 and frame.ref in self._pending:
            self._answer(frame.ref, frame)
        elif isinstance(frame, (f.Welcome, f.Tokens)):
            self._handshake_answer(frame)
        elif isinstance(frame, f.GoAway):
            self._fail(SessionEndedError(ErrorCode.of(frame.code), frame.message))
        else:
            if isinstance(frame, f.StreamOpen):
                self.acks.received(frame.ref)
            self.listener.frame_received(self, frame)

    def _grant(self, count: int) -> None:
        self.credit += count
        waiter, self._credit_waiter = self._credit_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _answer(self, ref: int, frame: f.Frame) -> None:
        future = self._pending.pop(ref, None)
        if future is not None and not future.done():
            future.set_result(frame)

    def _handshake_answer(self, frame: f.Frame | ACBError) -> None:
        future, self._handshake = self._handshake, None
        if future is None or future.done():
            return
        if isinstance(frame, ACBError):
            future.set_exception(frame)
        else:
            future.set_result(frame)

    def _error(self, frame: f.Error) -> None:
        error = error_from(frame.code, frame.message, retry_after_ms=frame.retry_after_ms, ref=frame.ref)
        if self.welcome is None and self._handshake is not None:
            self._handshake_answer(error)
            return
        if self._settle_send(frame.ref, None, error):
            self._grant(1)  # the bus does not grant a refused send's credit again (5.2)
            return
        future = self._pending.pop(frame.ref, None)
        if future is not None:
            if not future.done():
                future.set_exception(error)
        else:
            self.listener.frame_received(self, frame)

    def _settle_send(self, ref: int, ok: f.Ok | None, error: ACBError | None) -> bool:
        """An answer of its own to a SEND, BROADCAST or PUBLISH: True if `ref` was one."""
        if not self._sends or ref < self._sends[0] or ref in self._settled_early:
            return False
        waiter = self._send_waiters.pop(ref, None)
        if waiter is None and ref not in self._sends:
            return False
        self._settled_early.add(ref)
        self._confirm(self._sends[0] - 1)
        if waiter is not None and not waiter.done():
            if error is not None:
                waiter.set_exception(error)
            elif ok is not None:
                waiter.set_result(SendOutcome(f.Outcome(ok.outcome), ok.recipients))
        elif error is not None and self.unconfirmed_error is None:
            self.unconfirmed_error = error
        return True

    def _confirm(self, upto: int) -> None:
        """Settles, in order, every outstanding send ref ≤ `upto`, and those answered on their own
        that now stand at the front."""
        sends = self._sends
        early = self._settled_early
        waiters = self._send_waiters
        while sends:
            ref = sends[0]
            if ref in early:
                early.discard(ref)
            elif ref <= upto:
                waiter = waiters.pop(ref, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(_CONFIRMED)
            else:
                break
            sends.popleft()
        if not sends:
            drained, self._drained = self._drained, None
            if drained is not None and not drained.done():
                drained.set_result(None)

    # MARK: the end

    def _fail(self, error: ACBError) -> None:
        if self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            reason = f": {exc}" if exc else ""
            self.error = ConnectionClosedError(ErrorCode.UNAVAILABLE, f"the connection closed{reason}")
        error = self.error
        self._handshake_answer(error)
        pending = list(self._pending.values()) + list(self._send_waiters.values())
        self._pending.clear()
        self._send_waiters.clear()
        self._sends.clear()
        for future in pending:
            if not future.done():
                future.set_exception(error)
        for waiter in (self._credit_waiter, self._drained, self._writable):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
        self._credit_waiter = self._drained = self._writable = None
        for ended in list(self._ended):
            if not ended.done():
                ended.set_result(None)
        self.listener.connection_ended(self, error)


_CONFIRMED = SendOutcome(f.Outcome.DELIVERED, None)
