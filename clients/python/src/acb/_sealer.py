"""The client's side of end-to-end encryption: sealing what it sends, opening what it receives, in
the order it came, and the keys of its peers (see `acb.sealing`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _frames as f
from .delivery import Delivery
from .errors import ACBError, ErrorCode
from .sealing import (
    AgentKeys,
    KeyRing,
    Kind,
    PublicKeys,
    Purpose,
    SealError,
    Sealing,
    anonymous,
    box,
    box_sender,
    key_id,
    kind_of,
    open_anonymous,
    open_box,
    reply_content,
)

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("acb")

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

    def __init__(self, client: Client, keys: AgentKeys | None, key_check_interval: float, require_sealed: bool):
        self.keys = keys
        self.ring = KeyRing()
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

    async def open_box(self, sealed: bytes, sender: str) -> tuple[Purpose, bytes, bytes]:
        """Opens a box from `sender`, its keys fetched again once if the box names others (they may
        have rotated)."""
        keys = await self.peer_keys(sender)
        if box_sender(sealed) != key_id(keys.box_key):
            keys = await self.peer_keys(sender, refresh=True)
        return open_box(sealed, keys, self.own())

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
                await self._open(delivery)
            except Exception as error:
                failure = _failure(error)
                # Keys that could not be fetched are not the payload's fault: left unacknowledged,
                # it comes again after the ack timeout. Anything else is refused.
                if failure.code != "keys_unavailable":
                    delivery.nack()
                self._report(SealingFailure(delivery.sender, delivery.delivery_id, failure))
                continue
            route(delivery)

    async def _open(self, delivery: Delivery) -> None:
        sealed = delivery.payload
        kind = kind_of(sealed)
        if kind is None:
            if self._require_sealed:
                raise SealError("not_sealed", f"a plaintext {delivery.kind.name.lower()} from {delivery.sender}")
            return
        expected = Purpose.REQUEST if delivery.kind == f.DeliveryKind.REQUEST else Purpose.MESSAGE
        if kind == Kind.BOX:
            purpose, nonce, content = await self.open_box(sealed, delivery.sender)
            sealed_by = "agent"
        elif kind == Kind.ANONYMOUS:
            purpose, content = open_anonymous(sealed, self.own())
            if purpose == Purpose.REQUEST:
                raise SealError("malformed", "an anonymous request: a request must be a box, its reply is bound to it")
            nonce, sealed_by = b"", "anonymous"
        elif kind == Kind.GROUP:
            raise SealError("unknown_group_key", "group messages are opened by the Swift client only")
        else:
            raise SealError("malformed", f"a sealed {kind.name.lower()} is not a message")
        if purpose == Purpose.GROUP_KEY:
            raise SealError("unknown_group_key", "this client keeps no group keys (the Swift client does)")
        if purpose != expected:
            raise SealError("malformed", f"a sealed {purpose.name.lower()} delivered as a {delivery.kind.name.lower()}")
        delivery._opened(content, sealed_by, nonce if purpose == Purpose.REQUEST else None)

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
