"""What the bus delivers to an agent, and the answer to a request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _frames as f
from .sealing import SealError

if TYPE_CHECKING:
    from ._connection import Connection
    from .client import Client

Payload = bytes | bytearray | memoryview | str
"""A payload: bytes as they are, or text sent as UTF-8."""


def payload_bytes(payload: Payload) -> bytes | bytearray | memoryview:
    return payload.encode() if isinstance(payload, str) else payload


#: DeliveryKind by value: an index instead of an enum call per message (the decoder checked the range).
_KINDS = tuple(f.DeliveryKind)


class Delivery:
    """A message delivered to this agent: the DELIVER frame's fields (section 4.14) and the means
    to settle it.

    Iterating `Client.deliveries()` acknowledges each delivery when the next one is asked for, and
    `Client.close()` acknowledges the one in hand; `ack()` and `nack()` settle it earlier. An
    unacknowledged delivery is delivered again (section 5.1). A stored message (`message_id` not 0)
    that was acknowledged is not handed out again when the bus redelivers it (see `HandledMessages`).
    """

    __slots__ = (
        "_client",
        "_connection",
        "_request_nonce",
        "attempt",
        "correlation_id",
        "deadline_ms",
        "delivery_id",
        "group",
        "kind",
        "message_id",
        "payload",
        "sealed_by",
        "sender",
        "settled",
        "subject",
    )

    def __init__(self, frame: f.Deliver, connection: Connection, client: Client) -> None:
        self.delivery_id: int = frame.delivery_id
        self.kind = _KINDS[frame.kind]
        #: The sender's agent id (the protocol's `from`).
        self.sender: str = frame.from_
        #: The topic of a `topic` delivery; empty otherwise.
        self.subject: str = frame.subject
        self.correlation_id: int = frame.correlation_id
        self.deadline_ms: int = frame.deadline_ms
        self.attempt: int = frame.attempt
        self.payload: bytes = frame.payload
        #: The id of the message's stored copy (a durable message, or one stored for an offline
        #: agent), the same on every redelivery and across restarts of the bus; 0 for a message held
        #: in memory only, and from a bus older than protocol version 3.
        self.message_id: int = frame.message_id or 0
        #: Who sealed it, for a payload the client opened (`"agent"`: the sender, checked against
        #: its pinned keys; `"anonymous"`: someone it cannot name; `"group"`: a member of `group`,
        #: checked by its signature); None for a plaintext one.
        self.sealed_by: str | None = None
        #: For `sealed_by == "group"`: the group (`owner/name`) whose key it was sealed with.
        self.group: str | None = None
        self._request_nonce: bytes | None = None
        self.settled = False
        self._connection = connection
        self._client = client

    def _opened(self, content: bytes, sealed_by: str, request_nonce: bytes | None, group: str | None = None) -> None:
        """The payload opened: a sealed request's reply is sealed back, bound to its nonce."""
        self.payload = content
        self.sealed_by = sealed_by
        self._request_nonce = request_nonce
        self.group = group

    @property
    def text(self) -> str:
        """The payload as UTF-8 text."""
        return self.payload.decode()

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)

    def ack(self) -> None:
        """Tells the bus this delivery is handled."""
        if not self.settled:
            self.settled = True
            self._connection.acks.finish(self.delivery_id)
            self._client._acknowledged(self)

    def nack(self) -> None:
        """Hands it back for another attempt (dead-lettered after the last one, section 5.1)."""
        if not self.settled:
            self.settled = True
            self._connection.acks.finish(self.delivery_id, nack=True)
            self._client._released(self)

    def reply(self, payload: Payload, *, error: bool = False) -> None:
        """Answers a delivery of kind `request` (REPLY), then acknowledges it. `error` marks the
        payload as the description of this responder's failure (status `error`). The reply to a
        sealed request is sealed to the requester."""
        if self.kind != f.DeliveryKind.REQUEST:
            raise ValueError("only a request can be replied to")
        status = f.ReplyStatus.ERROR if error else f.ReplyStatus.OK
        data = payload_bytes(payload)
        if self._request_nonce is not None:
            try:
                data = self._client._sealer.seal_reply(bytes(data), self, self._request_nonce)
            except SealError:
                # The requester refuses a plaintext reply: only that it failed, which tells nothing.
                status, data = f.ReplyStatus.ERROR, b"the reply could not be sealed"
        self._connection.write(f.encode_reply(self.correlation_id, status, data))
        self.ack()

    def __repr__(self) -> str:
        return (
            f"Delivery(id={self.delivery_id}, kind={self.kind.name.lower()}, sender={self.sender!r}, "
            f"subject={self.subject!r}, attempt={self.attempt}, message_id={self.message_id}, "
            f"payload={self.payload[:64]!r})"
        )


@dataclass(slots=True)
class Response:
    """The answer to a request: who answered, and its REPLY (status and payload)."""

    sender: str
    status: f.ReplyStatus
    payload: bytes

    @property
    def ok(self) -> bool:
        """False when the responder answered with status `error` (its own failure)."""
        return self.status == f.ReplyStatus.OK

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)
