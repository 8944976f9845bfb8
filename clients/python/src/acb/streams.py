"""Streams (section 5.9): uploads sent in chunks a few ahead of what the bus stored, resumed after
a reconnect; downloads written to files, checked against their SHA-256, and resumed after a
reconnect from the chunks already kept."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import tempfile
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from . import _frames as f
from .errors import ACBError, ConnectionClosedError, ErrorCode, SessionEndedError, StreamError, error_from
from .target import Target

if TYPE_CHECKING:
    from ._connection import Connection
    from .client import Client

StreamSource = bytes | bytearray | memoryview | str | os.PathLike[str]
"""What an upload sends: bytes in memory, or the path of a file (read a chunk at a time)."""
Progress = Callable[[str, int, int], None]
"""A progress callback: (stream id, bytes so far, total bytes)."""

#: Chunks an upload keeps sent but not yet stored by the bus (it allows 16, 5.2).
UPLOAD_WINDOW = 8
#: STREAM_RESUME answered `unknown_stream` right after a reconnect is asked again this often, this
#: many times (2 s): the bus may not have parked the upload yet.
RESUME_ATTEMPTS = 20
RESUME_INTERVAL = 0.1
#: Broken downloads kept to resume when the bus delivers the same stream again.
PARTIAL_DOWNLOADS = 8


@dataclass(slots=True)
class IncomingStream:
    """A stream delivered to this agent, verified against its SHA-256 and written to `path` (the
    file is the application's to move or delete). Acknowledge it with `ack()`; iterating
    `Client.streams()` does so when the next one is asked for."""

    delivery_id: int
    sender: str
    stream_id: str
    size: int
    sha256: bytes
    path: str
    settled: bool
    _connection: Connection
    #: `"agent"` for a stream the client opened (sealed by its sender, checked against its pinned
    #: keys; `size` and `sha256` are then the plaintext's); None for a plaintext one.
    sealed_by: str | None = None

    def ack(self) -> None:
        if not self.settled:
            self.settled = True
            self._connection.acks.finish(self.delivery_id)

    def nack(self) -> None:
        """Has the bus send the whole stream again later, as a new delivery."""
        if not self.settled:
            self.settled = True
            self._connection.acks.finish(self.delivery_id, nack=True)


class _Chunks:
    """Reads an upload's bytes a chunk at a time, from memory or from a file."""

    def __init__(self, source: StreamSource) -> None:
        self._memory: memoryview | None = None
        self._file: BinaryIO | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._memory = memoryview(source).cast("B")
            self.size = len(self._memory)
        else:
            self._file = open(source, "rb")  # noqa: SIM115 - closed by close()
            self.size = os.fstat(self._file.fileno()).st_size

    def read(self, offset: int, count: int) -> bytes | memoryview:
        if self._memory is not None:
            return self._memory[offset : offset + count]
        assert self._file is not None
        self._file.seek(offset)
        return self._file.read(count)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _stream_end(stream_id: str, sha256: bytes, ref: int) -> bytes:
    """STREAM_END of an upload, with the SHA-256 its STREAM_OPEN left to it (4.20)."""
    return f.StreamEnd(ref=ref, stream_id=stream_id, sha256=sha256).encode()


class _Upload:
    """What the bus reported of one upload: the chunks it stored, or why it gave up."""

    def __init__(self, stream_id: str, total: int, progress: Progress | None) -> None:
        self.stream_id = stream_id
        self.total = total
        self.progress = progress
        self.stored = 0
        self.stored_bytes = 0
        self.aborted: ACBError | None = None
        self._changed: asyncio.Future[None] | None = None

    def report(self, next_index: int, stored_bytes: int) -> None:
        self.stored = max(self.stored, next_index)
        if stored_bytes > self.stored_bytes:
            self.stored_bytes = stored_bytes
            if self.progress is not None:
                self.progress(self.stream_id, stored_bytes, self.total)
        self._wake()

    def abort(self, error: ACBError) -> None:
        self.aborted = error
        self._wake()

    async def changed(self, connection: Connection) -> None:
        if self.aborted is not None:
            raise self.aborted
        self._changed = asyncio.get_running_loop().create_future()
        ended = connection.ended()
        try:
            await asyncio.wait((self._changed, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if self.aborted is not None:
            raise self.aborted
        if connection.error is not None:
            raise connection.error

    def _wake(self) -> None:
        waiter, self._changed = self._changed, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Download:
    """A download on its way to a file: the chunks kept so far and their running SHA-256."""

    def __init__(self, frame: f.StreamOpen, directory: str) -> None:
        self.sender = frame.target_name
        self.stream_id = frame.stream_id.partition("/")[2]
        self.size = frame.total_size
        self.sha256 = frame.sha256
        self.key = (self.sender, self.stream_id, self.size, self.sha256)
        self.next_index = 0
        self.received = 0
        self.digest = hashlib.sha256()
        descriptor, self.path = tempfile.mkstemp(prefix="acb-stream-", dir=directory)
        self.file = os.fdopen(descriptor, "wb")

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.digest.update(data)
        self.next_index += 1
        self.received += len(data)

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class StreamHub:
    """The streams of one client: its uploads by stream id, the downloads under way by their
    download stream id, broken downloads kept for resume, and verified streams not yet taken."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._uploads: dict[str, _Upload] = {}
        self._downloads: dict[str, tuple[Connection, int, _Download]] = {}
        self._partials: OrderedDict[tuple[str, str, int, bytes], _Download] = OrderedDict()
        self._inbox: deque[IncomingStream] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._in_hand: IncomingStream | None = None
        self._failure: ACBError | None = None
        self._closed = False

    # MARK: uploads

    async def upload(
        self, target: Target, source: StreamSource, stream_id: str | None, progress: Progress | None, deadline_ms: int
    ) -> f.Ok:
        chunks = _Chunks(source)
        if chunks.size == 0:
            chunks.close()
            raise ValueError("a stream carries at least one byte")
        stream_id = stream_id or uuid.uuid4().hex
        state = _Upload(stream_id, chunks.size, progress)
        self._uploads[stream_id] = state
        try:
            connection = await self._client._current()
            assert connection.welcome is not None
            chunk_size = connection.welcome.chunk_size
            count = -(-chunks.size // chunk_size)
            opened = f.StreamOpen(
                ref=0,
                stream_id=stream_id,
                target_kind=target.kind,
                target_name=target.name,
                total_size=chunks.size,
                chunk_size=chunk_size,
                sha256=bytes(32),  # given in STREAM_END, hashed as the chunks go out (4.20)
                deadline_ms=deadline_ms,
            )
            digest, hashed = hashlib.sha256(), 0

            def open_frame(ref: int) -> bytes:
                opened.ref = ref
                return opened.encode()

            await connection.call(open_frame)
            sent = 0
            sid = stream_id.encode()
            while True:
                try:
                    while sent < count:
                        while sent - state.stored >= UPLOAD_WINDOW:
                            await state.changed(connection)
                        await connection.writable()
                        data = chunks.read(sent * chunk_size, chunk_size)
                        if sent == hashed:  # each chunk once: those sent again after a resume were hashed
                            digest.update(data)
                            hashed += 1
                        connection.write(f.encode_chunk(sid, sent, data))
                        sent += 1
                    answer = await connection.call(functools.partial(_stream_end, stream_id, digest.digest()))
                    assert isinstance(answer, f.Ok)
                    if progress is not None and state.stored_bytes < chunks.size:
                        progress(stream_id, chunks.size, chunks.size)
                    return answer
                except (ConnectionClosedError, SessionEndedError):
                    connection, status = await self._resume(stream_id, ended=sent == count)
                    state.stored = sent = status.next_index
        finally:
            chunks.close()
            del self._uploads[stream_id]

    async def _resume(self, stream_id: str, ended: bool) -> tuple[Connection, f.StreamStatus]:
        """Where the bus stands with an upload the connection broke (5.9), asked on the next
        connection. The bus parks the upload when it notices the old connection closed, which may
        be after the new one is up: `unknown_stream` is asked again for a while. After STREAM_END
        it may also mean the bus finished the stream: then nobody can tell whether it was delivered."""
        for attempt in range(RESUME_ATTEMPTS):
            connection = await self._client._current()
            try:
                status = await connection.call(lambda ref: f.StreamResume(ref=ref, stream_id=stream_id).encode())
            except StreamError as error:
                if error.code != ErrorCode.UNKNOWN_STREAM:
                    raise
                if attempt == RESUME_ATTEMPTS - 1:
                    if ended:
                        raise ConnectionClosedError(
                            ErrorCode.UNAVAILABLE,
                            f"the connection broke after the STREAM_END of {stream_id}: it may have been delivered",
                        ) from error
                    raise
                await asyncio.sleep(RESUME_INTERVAL)
                continue
            assert isinstance(status, f.StreamStatus)
            return connection, status
        raise AssertionError("unreachable")

    # MARK: frames

    def frame_received(self, connection: Connection, frame: f.Frame) -> None:
        if isinstance(frame, f.StreamStatus):
            upload = self._uploads.get(frame.stream_id)
            if upload is not None:
                upload.report(frame.next_index, frame.bytes)
        elif isinstance(frame, f.StreamAbort):
            upload = self._uploads.get(frame.stream_id)
            if upload is not None:
                upload.abort(error_from(frame.code, frame.message))
            else:
                self._aborted(frame)
        elif isinstance(frame, f.StreamOpen):
            self._opened(connection, frame)
        elif isinstance(frame, f.StreamChunk):
            self._chunk(frame)
        elif isinstance(frame, f.StreamEnd):
            self._ended(frame)

    def _opened(self, connection: Connection, frame: f.StreamOpen) -> None:
        directory = self._client.options.download_dir or tempfile.gettempdir()
        fresh = _Download(frame, directory)
        kept = self._partials.pop(fresh.key, None)
        if kept is not None and kept.next_index > 0:
            fresh.discard()
            fresh = kept
            connection.write(
                f.StreamStatus(
                    ref=frame.ref, stream_id=frame.stream_id, next_index=kept.next_index, bytes=kept.received
                ).encode()
            )
        elif kept is not None:
            kept.discard()
        self._downloads[frame.stream_id] = (connection, frame.ref, fresh)

    def _chunk(self, frame: f.StreamChunk) -> None:
        entry = self._downloads.get(frame.stream_id)
        if entry is None:
            return
        download = entry[2]
        if frame.index < download.next_index:
            return  # already kept from an earlier attempt (5.9)
        if frame.index > download.next_index:
            self._give_up(frame.stream_id, nack=True)
            return
        download.write(bytes(frame.data))
        progress = self._client.options.download_progress
        if progress is not None:
            progress(download.stream_id, download.received, download.size)

    def _ended(self, frame: f.StreamEnd) -> None:
        entry = self._downloads.pop(frame.stream_id, None)
        if entry is None:
            return
        connection, delivery_id, download = entry
        download.file.close()
        if download.received != download.size or download.digest.digest() != download.sha256:
            download.discard()
            connection.acks.finish(delivery_id, nack=True)
            return
        incoming = IncomingStream(
            delivery_id,
            download.sender,
            download.stream_id,
            download.size,
            download.sha256,
            download.path,
            False,
            connection,
        )
        sealer = self._client._sealer
        if sealer.is_sealed_stream(download.path):
            sealer.receive_stream(incoming, self._arrived)
        elif not sealer.refuses(incoming):
            self._arrived(incoming)

    def _arrived(self, incoming: IncomingStream) -> None:
        if self._closed:
            os.unlink(incoming.path)  # nobody will take it: the bus delivers it again
            return
        self._inbox.append(incoming)
        self._wake()

    def _aborted(self, frame: f.StreamAbort) -> None:
        """The bus withdrew a download (5.9): its id is dead, its partial data useless."""
        self._give_up(frame.stream_id, nack=False)

    def _give_up(self, stream_id: str, nack: bool) -> None:
        entry = self._downloads.pop(stream_id, None)
        if entry is not None:
            connection, delivery_id, download = entry
            download.discard()
            connection.acks.finish(delivery_id, nack=nack)

    def connection_ended(self, connection: Connection) -> None:
        """Keeps the downloads the connection broke off, to resume them when they come again."""
        for stream_id, (owner, _, download) in list(self._downloads.items()):
            if owner is connection:
                del self._downloads[stream_id]
                download.file.flush()
                self._partials[download.key] = download
                while len(self._partials) > PARTIAL_DOWNLOADS:
                    self._partials.popitem(last=False)[1].discard()
        # Verified streams not yet taken are delivered again to the next session.
        for incoming in [s for s in self._inbox if s._connection is connection]:
            self._inbox.remove(incoming)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(incoming.path)

    # MARK: the application's side

    async def iterate(self) -> AsyncIterator[IncomingStream]:
        """Hands out verified streams; each is acknowledged when the next is asked for, when the
        iteration stops, or when the client closes."""
        try:
            while True:
                while not self._inbox:
                    if self._failure is not None:
                        raise self._failure
                    if self._closed:
                        return
                    self._waiter = asyncio.get_running_loop().create_future()
                    await self._waiter
                self._in_hand = self._inbox.popleft()
                yield self._in_hand
                self._in_hand.ack()
        finally:
            if self._in_hand is not None:
                self._in_hand.ack()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: ACBError) -> None:
        self._failure = error
        for upload in self._uploads.values():
            upload.abort(error)
        self._wake()

    def close(self) -> None:
        self._closed = True
        if self._in_hand is not None:
            self._in_hand.ack()
        for _, _, download in self._downloads.values():
            download.discard()
        for download in self._partials.values():
            download.discard()
        for incoming in self._inbox:  # verified, never handed out: nobody else will delete them
            with contextlib.suppress(FileNotFoundError):
                os.unlink(incoming.path)
        self._inbox.clear()
        self._downloads.clear()
        self._partials.clear()
        self._wake()
