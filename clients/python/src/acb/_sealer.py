"""The client's side of end-to-end encryption: sealing what it sends, opening what it receives, in
the order it came, and the keys of its peers (see `acb.sealing`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from . import _frames as f
from .delivery import Delivery
from .errors import ACBError, ErrorCode
from .sealing import (
    MAGIC,
    STREAM_HEADER_BYTES,
    AgentKeys,
    KeyRing,
    Kind,
    PublicKeys,
    Purpose,
    Reader,
    SealError,
    Sealing,
    anonymous,
    box,
    box_sender,
    context_body,
    context_head,
    group_key_content,
    group_message,
    key_id,
    kind_of,
    open_anonymous,
    open_box,
    open_signed_aead,
    open_stream_file,
    random_key,
    reply_content,
    seal_stream,
)
from .streams import IncomingStream, StreamSource

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("acb")
_T = TypeVar("_T")

#: Refusals kept for `sealing_failures()` until read; beyond it the oldest are dropped (and logged).
MAX_FAILURES = 1024


@dataclass(frozen=True, slots=True)
class SealingFailure:
    """A delivery the client refused to open: NACKed (so delivered again, and dead-lettered after
    the last attempt), never handed to the application."""

    sender: str
    delivery_id: int
    error: SealError


class Sealer:
    """Seals and opens for one client. With keys (or `require_sealed`), every delivery goes
    through `receive`, which opens them one at a time in the order they came; the queue is bounded
    by the bus's unacknowledged window, since none of them is acknowledged before it is opened."""

    def __init__(
        self,
        client: Client,
        keys: AgentKeys | None,
        key_check_interval: float,
        require_sealed: bool,
        pin_file: str | None = None,
    ):
        self.keys = keys
        #: The keys before the last rotation: what was sealed to them still opens.
        self.previous: AgentKeys | None = None
        self.ring = KeyRing(pin_file)
        self._client = client
        self._check_interval = key_check_interval
        self._require_sealed = require_sealed
        self._opening: asyncio.Queue[Delivery] = asyncio.Queue()
        self._opener: asyncio.Task[None] | None = None
        self._failures: asyncio.Queue[SealingFailure] = asyncio.Queue(MAX_FAILURES)

    @property
    def opens(self) -> bool:
        """Whether deliveries must go through `receive`."""
        return self.keys is not None or self._require_sealed

    def own(self) -> AgentKeys:
        if self.keys is None:
            raise SealError("invalid_keys", "this client has no keys (acb.connect(..., keys=...))")
        return self.keys

    def _with_own_keys(self, opener: Callable[[AgentKeys], _T]) -> _T:
        """`opener` with this agent's keys, then with those before its last rotation if what it
        opens was sealed for other keys (`wrong_key`)."""
        failure = SealError("invalid_keys", "this client has no keys (acb.connect(..., keys=...))")
        for own in (self.keys, self.previous):
            if own is None:
                continue
            try:
                return opener(own)
            except SealError as error:
                if error.code != "wrong_key":
                    raise
                failure = error
        raise failure

    def rotated(self, new_keys: AgentKeys) -> None:
        self.previous, self.keys = self.keys, new_keys

    # MARK: keys

    async def peer_keys(self, agent: str, refresh: bool = False) -> PublicKeys:
        """The keys of `agent`: pinned ones checked with the bus within `key_check_interval`,
        else fetched and checked now."""
        if not refresh:
            pinned = self.ring.pinned(agent, self._check_interval)
            if pinned is not None:
                return pinned
        return self.ring.accept(await self._fetch(agent))

    async def _fetch(self, agent: str) -> f.Key:
        """KEY_FETCH of `agent`; `key_changed` when the answer is about another agent (a bus that
        lies would pin its own keys under a name nobody checks)."""
        answer = await self._client._call(lambda ref: f.KeyFetch(ref=ref, agent_id=agent).encode())
        assert isinstance(answer, f.Key)
        if answer.agent_id != agent:
            raise SealError("key_changed", f"asked for the keys of {agent}, the bus answered with {answer.agent_id}'s")
        return answer

    async def trust(self, agent: str, fingerprint: str) -> None:
        answer = await self._fetch(agent)
        keys = PublicKeys(answer.box_key, answer.sign_key)
        if answer.revoked:
            raise SealError("key_revoked", f"an operator revoked the keys of {agent}")
        if keys.fingerprint != fingerprint:
            raise SealError("key_changed", f"the bus has {keys.fingerprint} for {agent}, not {fingerprint}")
        self.ring.pin(agent, keys)

    # MARK: sealing

    async def seal(
        self, kind: f.TargetKind, name: str, payload: bytes, sealing: Sealing, purpose: Purpose
    ) -> tuple[bytes, bytes]:
        """`payload` sealed for the agent `name`; returns it and, for a box, its nonce."""
        if kind != f.TargetKind.AGENT:
            raise SealError("needs_agent", "sealing needs an agent by id: a capability names no keys")
        own = self.own()
        recipient = await self.peer_keys(name)
        if sealing == "anonymous":
            return anonymous(payload, purpose, recipient), b""
        return box(payload, purpose, recipient, own)

    def seal_reply(self, payload: bytes, to: Delivery, nonce: bytes) -> bytes:
        """A reply sealed back to the requester, whose keys opening its request just pinned."""
        requester = self.ring.known(to.sender)
        if requester is None:
            raise SealError("key_changed", f"no keys pinned for {to.sender}")
        return box(payload, Purpose.REPLY, requester, self.own(), binding=nonce)[0]

    async def sign_key(self, agent: str, named: bytes) -> bytes:
        """The signing key of `agent` if its id is `named` (fetched again once if not: it may have
        rotated); `wrong_sender` when the agent's keys are others."""
        keys = await self.peer_keys(agent)
        if key_id(keys.sign_key) != named:
            keys = await self.peer_keys(agent, refresh=True)
        if key_id(keys.sign_key) != named:
            raise SealError("wrong_sender", f"not signed by the keys of {agent}")
        return keys.sign_key

    # MARK: groups

    async def send_group_key(self, name: str, epoch: int, key: bytes, member: str) -> None:
        recipient = await self.peer_keys(member)
        sealed, _ = box(group_key_content(name, epoch, key), Purpose.GROUP_KEY, recipient, self.own())
        await self._client.send(member, sealed)

    def seal_for_group(self, payload: bytes, group: str) -> bytes:
        newest = self.ring.newest_group_key(group)
        if newest is None:
            raise SealError("unknown_group_key", f"this agent holds no key of group {group}")
        epoch, key = newest
        return group_message(payload, group, epoch, key, self.own())

    async def open_group_message(self, sealed: bytes, member: str) -> tuple[str, bytes]:
        """A group message `member` wrote: the group's id and the payload."""
        reader = Reader(sealed)
        group = reader.string()
        epoch = reader.integer(4)
        signer = reader.take(8)
        key = self.ring.group_key(group, epoch)
        if key is None:
            raise SealError("unknown_group_key", f"no key of group {group} at epoch {epoch}")
        content = open_signed_aead(sealed, reader.offset, key, await self.sign_key(member, signer))
        if not content or content[0] != Purpose.MESSAGE:
            raise SealError("malformed", "a group message of another purpose")
        return group, content[1:]

    # MARK: streams

    def is_sealed_stream(self, path: str) -> bool:
        """Whether the stream file at `path` is sealed, and this client can open it."""
        if self.keys is None:
            return False
        with open(path, "rb") as file:
            return kind_of(file.read(len(MAGIC) + 1)) == Kind.STREAM

    async def seal_upload(self, source: StreamSource, recipient: str, directory: str) -> str:
        """`source` sealed for agent `recipient` into a new file under `directory`: its path."""
        keys, own = await self.peer_keys(recipient), self.own()
        size = (
            memoryview(source).nbytes if isinstance(source, (bytes, bytearray, memoryview)) else os.path.getsize(source)
        )
        with tempfile.NamedTemporaryFile(dir=directory, prefix="acb-sealed-", delete=False) as out:
            try:
                await asyncio.to_thread(seal_stream, source, size, keys, own, out)
            except BaseException:
                os.unlink(out.name)
                raise
        return out.name

    def refuses(self, stream: IncomingStream) -> bool:
        """With `require_sealed`, refuses a plaintext stream (`not_sealed`): deleted, NACKed and
        reported. Whether it did."""
        if not self._require_sealed:
            return False
        os.unlink(stream.path)
        stream.nack()
        self._report(
            SealingFailure(
                stream.sender, stream.delivery_id, SealError("not_sealed", f"a plaintext stream from {stream.sender}")
            )
        )
        return True

    def receive_stream(self, stream: IncomingStream, deliver: Callable[[IncomingStream], None]) -> None:
        """Opens a sealed stream in place (off the event loop), then hands it to `deliver`; one
        that does not open is deleted, NACKed and reported."""

        async def open_and_deliver() -> None:
            try:
                with open(stream.path, "rb") as file:
                    header = file.read(STREAM_HEADER_BYTES)
                if len(header) != STREAM_HEADER_BYTES:
                    raise SealError("truncated", "no header")
                purpose, _, content = await self.open_box(header, stream.sender)
                if purpose != Purpose.STREAM_KEY:
                    raise SealError("malformed", "not a sealed stream's header")
                # Shielded: a close while it runs waits for the file, so it can delete it below.
                stream.size, stream.sha256 = await asyncio.shield(
                    asyncio.to_thread(open_stream_file, stream.path, content)
                )
                stream.sealed_by = "agent"
            except BaseException as error:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(stream.path)
                if not isinstance(error, Exception):
                    raise  # cancelled: the client is closing, and the bus delivers it again
                failure = _failure(error)
                if failure.code != "keys_unavailable":
                    stream.nack()
                self._report(SealingFailure(stream.sender, stream.delivery_id, failure))
                return
            if not stream._connection.is_open:
                os.unlink(stream.path)  # its connection closed meanwhile: the bus delivers it again
                return
            deliver(stream)

        self._client._spawn(open_and_deliver())

    # MARK: contexts

    async def seal_context(
        self, id: str, body: bytes, readers: list[str], current: tuple[int, bytes, set[str]] | None
    ) -> bytes:
        """`body` sealed for `readers` (this agent among them): under the current key while readers
        are only added, else under the next epoch's."""
        epoch, key, before = current if current is not None else (0, b"", set())
        if not key or not before <= set(readers):
            epoch, key = epoch + 1, random_key()
        wrapped = [(reader, await self.peer_keys(reader)) for reader in readers]
        return await _off_loop(len(body), context_body, id, body, epoch, key, wrapped, self.own())

    def context_key(self, id: str, sealed: bytes, me: str) -> tuple[int, bytes, set[str]]:
        """The epoch, key and readers of a sealed body, its key unwrapped with this agent's keys."""
        head = context_head(sealed)
        wrapped = head.readers.get(me)
        if wrapped is None:
            raise SealError("wrong_key", f"{id} is not sealed for {me}")

        def unwrap(own: AgentKeys) -> bytes:
            key = own.open_anonymous(wrapped)
            if key is None:
                raise SealError("wrong_key", f"the key of {id} was wrapped for other keys than this agent's")
            return key

        return head.epoch, self._with_own_keys(unwrap), set(head.readers)

    async def open_context(self, id: str, sealed: bytes, writer: str, me: str) -> bytes:
        """The body of a sealed context `writer` wrote."""
        _, key, _ = self.context_key(id, sealed, me)
        head = context_head(sealed)
        sign_key = await self.sign_key(writer, head.signer)
        return await _off_loop(len(sealed), open_signed_aead, sealed, head.end, key, sign_key, id.encode())

    async def open_box(self, sealed: bytes, sender: str) -> tuple[Purpose, bytes, bytes]:
        """Opens a box from `sender`, its keys fetched again once if the box names others (they may
        have rotated)."""
        keys = await self.peer_keys(sender)
        if box_sender(sealed) != key_id(keys.box_key):
            keys = await self.peer_keys(sender, refresh=True)
        return self._with_own_keys(lambda own: open_box(sealed, keys, own))

    async def open_reply(self, response: f.Response, agent: str, nonce: bytes) -> bytes:
        """The reply to a request sealed with `nonce` for `agent`: `wrong_sender` when another agent
        answered (the nonce travels in clear)."""
        if response.from_ != agent:
            raise SealError("wrong_sender", f"the sealed request to {agent} was answered by {response.from_}")
        if kind_of(response.payload) != Kind.BOX:
            raise SealError("not_sealed", f"the reply of {response.from_} to a sealed request is not sealed")
        purpose, _, content = await self.open_box(response.payload, response.from_)
        if purpose != Purpose.REPLY:
            raise SealError("malformed", f"a sealed {purpose.name.lower()}, not a reply")
        return reply_content(content, nonce)

    # MARK: receiving

    def receive(self, delivery: Delivery, route: Callable[[Delivery], None]) -> None:
        """Opens `delivery` after those before it, then hands it to `route`."""
        self._opening.put_nowait(delivery)
        if self._opener is None or self._opener.done():
            self._opener = asyncio.ensure_future(self._open_in_order(route))

    async def _open_in_order(self, route: Callable[[Delivery], None]) -> None:
        while not self._opening.empty():
            delivery = self._opening.get_nowait()
            if not delivery._connection.is_open:
                continue  # the bus delivers it again on the next connection
            try:
                if not await self._open(delivery):
                    delivery.ack()  # a group's key, kept
                    continue
                if not delivery._connection.is_open:
                    continue  # closed while its sender's keys were fetched: it comes again
            except Exception as error:
                failure = _failure(error)
                # Keys that could not be fetched are not the payload's fault: left unacknowledged,
                # it comes again after the ack timeout. Anything else is refused.
                if failure.code != "keys_unavailable":
                    delivery.nack()
                self._report(SealingFailure(delivery.sender, delivery.delivery_id, failure))
                continue
            route(delivery)

    async def _open(self, delivery: Delivery) -> bool:
        """Opens `delivery` in place; False for a group's key, which the client keeps."""
        sealed = delivery.payload
        kind = kind_of(sealed)
        if kind is None:
            if self._require_sealed:
                raise SealError("not_sealed", f"a plaintext {delivery.kind.name.lower()} from {delivery.sender}")
            return True
        expected = Purpose.REQUEST if delivery.kind == f.DeliveryKind.REQUEST else Purpose.MESSAGE
        if kind == Kind.BOX:
            purpose, nonce, content = await self.open_box(sealed, delivery.sender)
            if purpose == Purpose.GROUP_KEY and delivery.kind == f.DeliveryKind.DIRECT:
                # Kept under the group of its sender: no member can pass a key off as the owner's.
                reader = Reader(content, 0)
                name, epoch = reader.string(), reader.integer(4)
                self.ring.keep_group_key(f"{delivery.sender}/{name}", epoch, reader.take(32))
                return False
            sealed_by = "agent"
        elif kind == Kind.ANONYMOUS:
            purpose, content = self._with_own_keys(lambda own: open_anonymous(sealed, own))
            if purpose == Purpose.REQUEST:
                raise SealError("malformed", "an anonymous request: a request must be a box, its reply is bound to it")
            nonce, sealed_by = b"", "anonymous"
        elif kind == Kind.GROUP:
            if delivery.kind == f.DeliveryKind.REQUEST:
                raise SealError("malformed", "a group message delivered as a request: its reply could not be sealed")
            group, payload = await self.open_group_message(sealed, delivery.sender)
            delivery._opened(payload, "group", None, group=group)
            return True
        else:
            raise SealError("malformed", f"a sealed {kind.name.lower()} is not a message")
        if purpose != expected:
            raise SealError("malformed", f"a sealed {purpose.name.lower()} delivered as a {delivery.kind.name.lower()}")
        delivery._opened(content, sealed_by, nonce if purpose == Purpose.REQUEST else None)
        return True

    def _report(self, failure: SealingFailure) -> None:
        log.warning("refused a sealed delivery from %s: %s", failure.sender, failure.error)
        if self._failures.full():
            self._failures.get_nowait()  # the oldest goes: the log has it
        self._failures.put_nowait(failure)

    async def failures(self) -> AsyncIterator[SealingFailure]:
        while True:
            yield await self._failures.get()

    def close(self) -> None:
        if self._opener is not None:
            self._opener.cancel()


class SealedGroup:
    """A group key this agent owns (`Client.sealed_group`): members get each epoch's key sealed to
    them; `publish(..., group=group.id)` and `broadcast(..., group=group.id)` seal with it, and
    only members open it. Removing a member makes the next epoch's key for the others."""

    def __init__(self, sealer: Sealer, name: str, owner: str, members: set[str]) -> None:
        self._sealer = sealer
        self.name = name
        #: `owner/name`, as members see it in `Delivery.group`.
        self.id = f"{owner}/{name}"
        self.members = set(members)
        self._epoch = 0
        self._key = b""

    async def add(self, agent: str) -> None:
        """Gives the current key to `agent`."""
        self.members.add(agent)
        await self._sealer.send_group_key(self.name, self._epoch, self._key, agent)

    async def remove(self, agent: str) -> None:
        """Makes a new key and gives it to every member but `agent`."""
        self.members.discard(agent)
        await self.rotate()

    async def rotate(self) -> None:
        """Makes the next epoch's key, keeps it, and gives it to every member. Epochs start from
        the clock's seconds, so a restarted owner's first key is newer than the ones members kept."""
        self._epoch, self._key = max(self._epoch + 1, int(time.time())), random_key()
        self._sealer.ring.keep_group_key(self.id, self._epoch, self._key)
        for member in sorted(self.members):
            await self._sealer.send_group_key(self.name, self._epoch, self._key, member)


#: Bodies larger than this are sealed and opened on a worker thread: a 64 MiB context body would
#: otherwise hold the event loop (heartbeats, acknowledgements) for a noticeable time.
OFF_LOOP_BYTES = 1 << 20


async def _off_loop(size: int, work: Callable[..., _T], *arguments: object) -> _T:
    """`work(*arguments)`, on a worker thread when `size` is over `OFF_LOOP_BYTES`."""
    return await asyncio.to_thread(work, *arguments) if size > OFF_LOOP_BYTES else work(*arguments)


def _failure(error: Exception) -> SealError:
    """What an error met while opening says of the delivery: a sender with no keys cannot have
    sealed it (`wrong_sender`); the bus's other errors, met fetching keys, are `keys_unavailable`."""
    if isinstance(error, SealError):
        return error
    if isinstance(error, ACBError) and error.code == ErrorCode.NO_KEY:
        return SealError("wrong_sender", "the sender has no keys")
    if isinstance(error, ACBError):
        return SealError("keys_unavailable", str(error))
    return SealError("malformed", repr(error))
