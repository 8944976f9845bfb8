"""Shared contexts (sections 4.23 to 4.32, 5.13 to 5.15): versioned documents agents write, read,
list and watch, with compare-and-swap, lineage and expiry."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import hashlib
import json
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _frames as f
from .delivery import payload_bytes
from .errors import (
    ACBError,
    ConnectionClosedError,
    ContextError,
    ErrorCode,
    PermissionDeniedError,
    SessionEndedError,
    StreamError,
    VersionConflictError,
    error_from,
)
from .sealing import SealError
from .target import Target

if TYPE_CHECKING:
    from .client import Client

Body = bytes | bytearray | memoryview | str | dict[str, Any] | list[Any] | int | float | bool | None
"""A context body: bytes as they are, text as UTF-8, any other value as JSON."""

_FELL_BEHIND = re.compile(r"after (\d+)")
#: Events a watch holds for the application; beyond it the watch pauses (unwatches) and resumes
#: from where it stood once the application has taken half of them.
WATCH_BACKLOG = 1024


_RAW = (bytes, bytearray, memoryview, str)


def body_bytes(body: Body) -> bytes | bytearray | memoryview:
    if isinstance(body, _RAW):
        return payload_bytes(body)
    return json.dumps(body, separators=(",", ":")).encode()


class _Version:
    """What `SharedContext` and `ContextEvent` say alike about the version of a context they hold: its
    id and number from the head, and the body as JSON."""

    __slots__ = ()
    head: f.ContextHead
    # `body` is a field of SharedContext and a property of ContextEvent: declared for the type checker
    # only, as a class attribute here would become SharedContext's default for the field.
    if TYPE_CHECKING:

        @property
        def body(self) -> bytes | None: ...

    @property
    def id(self) -> str:
        return self.head.id

    @property
    def version(self) -> int:
        return self.head.version

    def json(self) -> Any:
        """The body parsed as JSON (None when there is no body)."""
        body = self.body
        return None if body is None else json.loads(body)


@dataclass(slots=True)
class SharedContext(_Version):
    """One version of a context: its head (id, owner, attributes, version, checksum, …) and body."""

    head: f.ContextHead
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass(slots=True)
class ContextEvent(_Version):
    """A change a watch heard of (4.31): its kind, the version's head, and the body or the JSON
    Patch it carries, if any."""

    kind: f.ContextEventKind
    head: f.ContextHead
    payload_kind: f.EventPayload
    payload: bytes

    @property
    def body(self) -> bytes | None:
        """The version's body, when the event carries it (bodies up to 64 KiB)."""
        return self.payload if self.payload_kind == f.EventPayload.BODY else None

    @property
    def patch(self) -> Any:
        """The RFC 6902 JSON Patch of a field-level watch, parsed; None for other events."""
        return json.loads(self.payload) if self.payload_kind == f.EventPayload.PATCH else None


class Watch:
    """A context watch: an async iterator of `ContextEvent`s, in commit order.

    It keeps the position to resume after (4.32), and watches again from there after a reconnect
    and after the bus ended it for falling behind, so nothing is missed or repeated. `close()` (or
    leaving `async with`) ends it.
    """

    def __init__(self, contexts: Contexts, target: str, after: int | None, snapshot: bool, paths: list[str]) -> None:
        self._contexts = contexts
        self.target = target
        self._by_revision = any(token in ("*", ">") for token in target.split("."))
        self._paths = paths
        self._snapshot = snapshot
        #: The position to resume after (None until known: a snapshot not yet complete).
        self.resume_after: int | None = after
        self._replay_left = 0
        self._position = 0
        self.ref = 0
        self._events: deque[ContextEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: ACBError | None = None
        self._closed = False
        self._paused = False

    async def _start(self) -> None:
        connection = await self._contexts._client._current()
        if self.resume_after is not None:
            start, after = f.WatchStart.AFTER, self.resume_after
        elif self._snapshot:
            start, after = f.WatchStart.SNAPSHOT, 0
        else:
            start, after = f.WatchStart.NOW, 0

        def build(ref: int) -> bytes:
            self.ref = ref
            self._contexts._watches[ref] = self
            return f.ContextWatch(ref=ref, target=self.target, start=start, after=after, paths=self._paths).encode()

        try:
            await connection.call(build)
        except ACBError:
            self._contexts._watches.pop(self.ref, None)
            raise

    def _watching(self, frame: f.ContextWatching) -> None:
        self._position = frame.position
        self._replay_left = frame.replayed
        if frame.replayed == 0:
            self.resume_after = max(self.resume_after or 0, frame.position)

    def _event(self, frame: f.ContextEvent) -> None:
        event = ContextEvent(
            f.ContextEventKind(frame.event), frame.head, f.EventPayload(frame.payload_kind), bytes(frame.payload)
        )
        position = frame.head.revision if self._by_revision else frame.head.version
        if event.kind != f.ContextEventKind.SNAPSHOT:
            self.resume_after = max(self.resume_after or 0, position)
        if self._replay_left > 0:
            self._replay_left -= 1
            if self._replay_left == 0:
                self.resume_after = max(self.resume_after or 0, self._position)
        self._events.append(event)
        self._wake()
        if len(self._events) >= WATCH_BACKLOG and self.resume_after is not None and not self._paused:
            self._pause()

    def _pause(self) -> None:
        """Stops hearing events beyond the backlog: events still on their way for this ref are
        dropped, and come again when the watch resumes after the last one kept."""
        self._paused = True
        self._contexts._watches.pop(self.ref, None)
        connection = self._contexts._client._connection
        if connection is not None and connection.is_open:
            connection.write(f.ContextUnwatch(ref=connection.next_ref(), watch=self.ref).encode())

    def _ended(self, error: ACBError) -> None:
        """An ERROR with this watch's ref: the bus ended it for falling behind, or refused it."""
        self._contexts._watches.pop(self.ref, None)
        behind = _FELL_BEHIND.search(error.message) if error.code == ErrorCode.OVERLOADED else None
        if behind is not None:
            self.resume_after = int(behind.group(1))
            self._contexts._client._spawn(self._restart())
        else:
            self._fail(error)

    async def _restart(self) -> None:
        """Sets the watch up again after where it stood. A connection that ends before the bus
        answers is not a refusal: it tries again once the client is connected again."""
        client = self._contexts._client
        while not self._closed and self._error is None:
            try:
                await self._start()
            except (ConnectionClosedError, SessionEndedError) as error:
                if client._closed or client._failure is not None:
                    self._fail(client._failure or error)
                    return
                continue  # _start waits (reconnect_wait) for the next connection
            except ACBError as error:
                self._fail(error)  # refused by the bus (compacted, forbidden, ...), or the client failed
                return
            if self._closed:  # closed while it was being set up again
                self._contexts._watches.pop(self.ref, None)
                connection = client._connection
                if connection is not None and connection.is_open:
                    with contextlib.suppress(ACBError):
                        await connection.call(lambda ref: f.ContextUnwatch(ref=ref, watch=self.ref).encode())
            return

    def _fail(self, error: ACBError) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> ContextEvent:
        while not self._events:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._paused and not self._closed and len(self._events) <= WATCH_BACKLOG // 2:
            self._paused = False
            self._contexts._client._spawn(self._restart())
        return self._events.popleft()

    async def close(self) -> None:
        """Ends the watch (CONTEXT_UNWATCH)."""
        if self._closed:
            return
        self._closed = True
        self._contexts._open.discard(self)
        self._wake()
        if self._contexts._watches.pop(self.ref, None) is None:
            return
        connection = self._contexts._client._connection
        if connection is not None and connection.is_open:
            with contextlib.suppress(ACBError):  # the bus may have ended it already
                await connection.call(lambda ref: f.ContextUnwatch(ref=ref, watch=self.ref).encode())

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


class Contexts:
    """The context operations of a client (`client.contexts`). Writes return the head of the new
    version; failures raise the bus's error (`VersionConflictError.current_version` for a lost
    compare-and-swap). Bodies over the inline limit are uploaded and read back as streams."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._watches: dict[int, Watch] = {}
        #: Every watch not closed, whether or not it runs on the current connection.
        self._open: set[Watch] = set()

    # MARK: writing

    async def put(
        self,
        id: str,
        body: Body,
        *,
        attributes: f.ContextAttributes | None = None,
        expected_version: int = 0,
        ttl_ms: int = 0,
    ) -> f.ContextHead:
        """Creates the context, or replaces its body. `attributes`, when given, replace all of
        them; None keeps the current ones, except that a JSON value (not bytes or str) as `body`
        sets the defaults with content type JSON, as a new context without attributes gets the
        defaults (bytes, private)."""
        if attributes is None and expected_version == 0 and not isinstance(body, _RAW):
            # A JSON value: a new context is a json one, an existing one keeps its attributes.
            # A live one refuses the create: version_conflict, or forbidden (its scope differs from
            # the defaults and the caller is not its owner); the put then says what holds.
            with contextlib.suppress(VersionConflictError, PermissionDeniedError):
                return await self.create(id, body, ttl_ms=ttl_ms)
        return await self._write(f.ContextOperation.PUT, id, body, attributes, expected_version, ttl_ms)

    async def create(
        self, id: str, body: Body, *, attributes: f.ContextAttributes | None = None, ttl_ms: int = 0
    ) -> f.ContextHead:
        """Creates the context (content type JSON for a JSON value without `attributes`, as for
        `put`); `VersionConflictError` if a live one exists."""
        return await self._write(f.ContextOperation.CREATE, id, body, attributes, 0, ttl_ms)

    async def update(
        self,
        id: str,
        body: Body,
        *,
        attributes: f.ContextAttributes | None = None,
        expected_version: int = 0,
        ttl_ms: int = 0,
    ) -> f.ContextHead:
        """Replaces the body of a live context."""
        return await self._write(f.ContextOperation.UPDATE, id, body, attributes, expected_version, ttl_ms)

    async def merge_patch(self, id: str, patch: Body, *, expected_version: int = 0) -> f.ContextHead:
        """Applies an RFC 7396 JSON Merge Patch to a json context."""
        return await self._write(f.ContextOperation.MERGE_PATCH, id, patch, None, expected_version, 0)

    async def json_patch(self, id: str, patch: Body, *, expected_version: int = 0) -> f.ContextHead:
        """Applies an RFC 6902 JSON Patch (a list of operations) to a json context: all or nothing."""
        return await self._write(f.ContextOperation.JSON_PATCH, id, patch, None, expected_version, 0)

    async def delete(self, id: str, *, expected_version: int = 0) -> f.ContextHead:
        """Deletes the context; returns the tombstone's head."""
        return await self._write(f.ContextOperation.DELETE, id, b"", None, expected_version, 0)

    async def touch(self, id: str, ttl_ms: int) -> f.ContextHead:
        """Sets a new expiry, `ttl_ms` from now."""
        return await self._write(f.ContextOperation.TOUCH, id, b"", None, 0, ttl_ms)

    async def _write(
        self,
        operation: f.ContextOperation,
        id: str,
        body: Body,
        attributes: f.ContextAttributes | None,
        expected_version: int,
        ttl_ms: int,
    ) -> f.ContextHead:
        if attributes is None and operation == f.ContextOperation.CREATE and not isinstance(body, _RAW):
            attributes = f.ContextAttributes(content_type=f.ContentType.JSON)
        data = bytes(body_bytes(body))
        body_stream = ""
        welcome = (await self._client._current()).welcome
        assert welcome is not None
        if len(data) > welcome.max_inline_payload:
            body_stream = uuid.uuid4().hex
            await self._client._streams.upload(Target(f.TargetKind.CONTEXT, id), data, body_stream, None, 0)
            data = b""
        frame = f.ContextWrite(
            ref=0,
            operation=operation,
            id=id,
            expected_version=expected_version,
            ttl_ms=ttl_ms,
            attributes=attributes,
            body=data,
            body_stream=body_stream,
        )

        def build(ref: int) -> bytes:
            frame.ref = ref
            return frame.encode()

        answer = await self._client._call(build)
        assert isinstance(answer, f.Context)
        return answer.head

    # MARK: sealed (end to end)

    async def put_sealed(
        self,
        id: str,
        body: Body,
        *,
        attributes: f.ContextAttributes,
        expected_version: int | None = None,
        ttl_ms: int = 0,
    ) -> f.ContextHead:
        """Puts a context sealed end to end (content type `sealed`, `acb.sealing`) for this agent and
        the `readers` and `writers` of `attributes` (whose scope must name them: not `tenant`).

        The key stays while readers are only added; dropping one makes a new key, which it cannot
        open. `expected_version` defaults to the version read to find the key, so a concurrent
        change is refused with `VersionConflictError`, not lost."""
        me = self._client.agent_id
        if attributes.scope == f.ContextScope.TENANT or not me:
            raise SealError("needs_agent", "a sealed context names its readers: scope tenant cannot be sealed")
        readers = sorted({me, *attributes.readers, *attributes.writers})
        sealer = self._client._sealer
        try:
            current: SharedContext | None = await self.get(id)
        except ContextError as error:
            if error.code not in (ErrorCode.UNKNOWN_CONTEXT, ErrorCode.CONTEXT_EXPIRED):
                raise
            current = None
        key = None
        if current is not None and current.head.attributes.content_type == f.ContentType.SEALED:
            key = sealer.context_key(id, current.body, me)
        sealed = await sealer.seal_context(id, bytes(body_bytes(body)), readers, key)
        sealed_attributes = dataclasses.replace(attributes, content_type=f.ContentType.SEALED)
        operation = f.ContextOperation.CREATE if current is None else f.ContextOperation.UPDATE
        version = expected_version if expected_version is not None else (current.version if current else 0)
        return await self._write(operation, id, sealed, sealed_attributes, version, ttl_ms)

    async def get_sealed(self, id: str, *, version: int = 0) -> SharedContext:
        """The latest version of a sealed context (or `version`), its body opened. Raises `SealError`:
        `wrong_key` when it was not sealed for this agent, `wrong_sender` when its writer did not
        sign it, `tampered`; and the errors of `get`."""
        return await self.open_sealed(await self.get(id, version=version))

    async def open_sealed(self, context: SharedContext) -> SharedContext:
        """`context` (from `get`) with its sealed body opened; for a watch's event, `get_sealed`
        its version."""
        if context.head.attributes.content_type != f.ContentType.SEALED:
            raise SealError("not_sealed", f"{context.id} is not a sealed context")
        sealer = self._client._sealer
        body = await sealer.open_context(context.id, context.body, context.head.updated_by, self._client.agent_id)
        return SharedContext(context.head, body)

    async def update_sealed(
        self, id: str, change: Callable[[SharedContext], Body], *, attributes: f.ContextAttributes
    ) -> f.ContextHead:
        """Reads, changes and writes back a sealed context until no one else wrote it in between
        (compare and set on its version): the bus cannot patch what it cannot read."""
        while True:
            current = await self.get_sealed(id)
            try:
                return await self.put_sealed(
                    id, change(current), attributes=attributes, expected_version=current.version
                )
            except VersionConflictError:
                continue

    # MARK: reading

    async def get(self, id: str, *, version: int = 0) -> SharedContext:
        """The latest version (or the given one, while kept), body included; a body over the inline
        limit comes as a stream and is checked against the head's size and SHA-256."""
        context = await self._get(id, version, 0)
        assert context is not None
        return context

    async def get_if_newer(self, id: str, version: int) -> SharedContext | None:
        """The latest version if it is newer than `version`, else None (the caller has it)."""
        return await self._get(id, 0, version)

    async def _get(self, id: str, version: int, if_newer_than: int) -> SharedContext | None:
        answer = await self._client._call(
            lambda ref: f.ContextGet(ref=ref, id=id, version=version, if_newer_than=if_newer_than).encode()
        )
        assert isinstance(answer, f.Context)
        if answer.status == f.ContextStatus.NOT_MODIFIED:
            return None
        body = bytes(answer.body)
        head = answer.head
        if len(body) != head.size or hashlib.sha256(body).digest() != head.checksum:
            raise StreamError(ErrorCode.CHECKSUM_MISMATCH, f"the body of {id} v{head.version} does not match its head")
        return SharedContext(head, body)

    async def list(
        self,
        *,
        kind: str = "",
        owner: str = "",
        pattern: str = "",
        prefix: str = "",
        metadata: dict[str, str] | None = None,
        cursor: str = "",
        limit: int = 0,
    ) -> f.ContextPage:
        """One page of the live contexts the caller may read (`heads`, `next_cursor`)."""
        entries = builtins.list((metadata or {}).items())
        answer = await self._client._call(
            lambda ref: f.ContextList(
                ref=ref,
                kind=kind,
                owner=owner,
                pattern=pattern,
                prefix=prefix,
                metadata=entries,
                cursor=cursor,
                limit=limit,
            ).encode()
        )
        assert isinstance(answer, f.ContextPage)
        return answer

    async def list_all(
        self,
        *,
        kind: str = "",
        owner: str = "",
        pattern: str = "",
        prefix: str = "",
        metadata: dict[str, str] | None = None,
    ) -> builtins.list[f.ContextHead]:
        """Every live context the caller may read that matches, page after page."""
        heads: builtins.list[f.ContextHead] = []
        cursor = ""
        while True:
            page = await self.list(
                kind=kind, owner=owner, pattern=pattern, prefix=prefix, metadata=metadata, cursor=cursor
            )
            heads.extend(page.heads)
            if not page.next_cursor:
                return heads
            cursor = page.next_cursor

    async def history(self, id: str, *, limit: int = 0) -> builtins.list[f.ContextHead]:
        """The heads of the kept versions, newest first (at most `limit`; 0 for all)."""
        return await self._page(lambda ref: f.ContextHistory(ref=ref, id=id, selector=limit, depth=0).encode())

    async def lineage(self, id: str, *, descendants: bool = False, depth: int = 0) -> builtins.list[f.ContextHead]:
        """The contexts related through `parents`, nearest first: ancestors, or descendants."""
        return await self._page(
            lambda ref: f.ContextLineage(ref=ref, id=id, selector=1 if descendants else 0, depth=depth).encode()
        )

    async def _page(self, build: Any) -> builtins.list[f.ContextHead]:
        answer = await self._client._call(build)
        assert isinstance(answer, f.ContextPage)
        return builtins.list(answer.heads)

    # MARK: watching

    async def watch(
        self, target: str, *, after: int | None = None, snapshot: bool = False, paths: builtins.list[str] | None = None
    ) -> Watch:
        """Watches a context id, or every id matching a pattern (`*`, `>`): changes from now, after a
        position (`after`), or a `snapshot` of the current versions first. `paths` (JSON Pointers)
        makes it a field-level watch whose events carry JSON Patches."""
        watch = Watch(self, target, after, snapshot, builtins.list(paths or []))
        await watch._start()
        self._open.add(watch)
        return watch

    def _frame_received(self, frame: f.Frame) -> None:
        if isinstance(frame, f.ContextEvent):
            watch = self._watches.get(frame.watch)
            if watch is not None:
                watch._event(frame)
        elif isinstance(frame, f.ContextWatching):
            watch = self._watches.get(frame.ref)
            if watch is not None:
                watch._watching(frame)
        elif isinstance(frame, f.Error):
            watch = self._watches.get(frame.ref)
            if watch is not None:
                watch._ended(error_from(frame.code, frame.message, ref=frame.ref))

    def _reconnected(self) -> None:
        """Watches belong to the session: set each up again after where it stood."""
        watches = [w for w in self._watches.values() if not w._closed]
        self._watches.clear()
        for watch in watches:
            self._client._spawn(watch._restart())

    def _fail(self, error: ACBError) -> None:
        for watch in self._open:  # those being set up again included, which no ref names
            watch._fail(error)
        self._open.clear()
        self._watches.clear()

    def _close(self) -> None:
        """The client closed: every watch's iteration ends, as deliveries() and streams() do."""
        for watch in self._open:
            watch._closed = True
            watch._wake()
        self._open.clear()
        self._watches.clear()
