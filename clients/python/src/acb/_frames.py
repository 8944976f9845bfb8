"""Encoding and decoding of every frame of the ACB wire protocol (docs/protocol.md, sections 2 and 4).

A frame on the wire is ``u32 length`` (of what follows), ``u8 type``, body. Every frame class here has
its type byte as ``TYPE`` and an ``encode()`` returning the whole frame, length prefix included;
:func:`decode` turns a type byte and a body into a frame object, applying every decoding rule of
section 2.1 (the length prefix itself, ``length`` 0 and ``too_large``, is the reader's business).

The module-level ``encode_*`` functions build the frames of the per-message path without a dataclass.

Strings are passed to the fast encoders already UTF-8 encoded. Payloads may be ``bytes``, ``bytearray``
or a byte-format ``memoryview`` (``len()`` is taken as its size, so cast other formats to ``"B"`` first).
A value that does not fit its field (an integer out of range, a ``str`` over 65,535 bytes) raises
``struct.error``; a list over 256 items or a ``sha256`` that is not 32 bytes raises ``ValueError``.
"""

from __future__ import annotations

import builtins
import enum
import struct
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeAlias, TypeVar, get_args

__all__ = [
    "ACK",
    "BROADCAST",
    "CONFIRM",
    "CONTEXT",
    "CONTEXT_EVENT",
    "CONTEXT_GET",
    "CONTEXT_HISTORY",
    "CONTEXT_LINEAGE",
    "CONTEXT_LIST",
    "CONTEXT_PAGE",
    "CONTEXT_UNWATCH",
    "CONTEXT_WATCH",
    "CONTEXT_WATCHING",
    "CONTEXT_WRITE",
    "CREDIT",
    "DELIVER",
    "DISCOVER",
    "DISCOVERED",
    "ERROR",
    "FRAME_CLASSES",
    "GOAWAY",
    "HEADER",
    "HEARTBEAT",
    "HELLO",
    "KEY",
    "KEY_BYTES",
    "KEY_FETCH",
    "KEY_PUBLISH",
    "LOGIN",
    "LOGOUT",
    "MAX_LIST",
    "NACK",
    "OK",
    "PING",
    "PONG",
    "PUBLISH",
    "REFRESH",
    "REGISTER",
    "REPLY",
    "REQUEST",
    "RESPONSE",
    "SEND",
    "SIGNATURE_BYTES",
    "STREAM_ABORT",
    "STREAM_CHUNK",
    "STREAM_END",
    "STREAM_OPEN",
    "STREAM_RESUME",
    "STREAM_STATUS",
    "SUBSCRIBE",
    "TOKENS",
    "UNREGISTER",
    "UNSUBSCRIBE",
    "WELCOME",
    "Ack",
    "AgentDescription",
    "AgentInfo",
    "AgentStatus",
    "Broadcast",
    "Confirm",
    "ContentType",
    "Context",
    "ContextAttributes",
    "ContextEvent",
    "ContextEventKind",
    "ContextGet",
    "ContextHead",
    "ContextHistory",
    "ContextLineage",
    "ContextList",
    "ContextOperation",
    "ContextPage",
    "ContextParent",
    "ContextScope",
    "ContextState",
    "ContextStatus",
    "ContextUnwatch",
    "ContextWatch",
    "ContextWatching",
    "ContextWrite",
    "Credit",
    "Deliver",
    "DeliveryKind",
    "Discover",
    "Discovered",
    "Error",
    "EventPayload",
    "Frame",
    "FrameError",
    "GoAway",
    "Heartbeat",
    "Hello",
    "Key",
    "KeyFetch",
    "KeyPublish",
    "Login",
    "Logout",
    "MessageFlags",
    "MetadataEntry",
    "Nack",
    "Ok",
    "Outcome",
    "Ping",
    "Pong",
    "Publish",
    "Readiness",
    "Refresh",
    "Register",
    "Reply",
    "ReplyStatus",
    "Request",
    "Response",
    "Send",
    "StreamAbort",
    "StreamChunk",
    "StreamEnd",
    "StreamOpen",
    "StreamResume",
    "StreamStatus",
    "Subscribe",
    "TargetKind",
    "Tokens",
    "Unregister",
    "Unsubscribe",
    "WatchStart",
    "Welcome",
    "decode",
    "encode_ack",
    "encode_chunk",
    "encode_fanout",
    "encode_nack",
    "encode_reply",
    "encode_send",
]

# ---------------------------------------------------------------------------------------------------
# Type bytes (section 4)

HELLO = 0x01
WELCOME = 0x02
ERROR = 0x03
GOAWAY = 0x04
OK = 0x05
LOGIN = 0x06
REFRESH = 0x07
TOKENS = 0x08
LOGOUT = 0x09
CREDIT = 0x0A
PING = 0x0B
PONG = 0x0C
CONFIRM = 0x0D
REGISTER = 0x10
UNREGISTER = 0x11
DISCOVER = 0x12
DISCOVERED = 0x13
HEARTBEAT = 0x14
SEND = 0x20
BROADCAST = 0x21
PUBLISH = 0x22
SUBSCRIBE = 0x23
UNSUBSCRIBE = 0x24
DELIVER = 0x25
ACK = 0x26
NACK = 0x27
REQUEST = 0x30
REPLY = 0x31
RESPONSE = 0x32
STREAM_OPEN = 0x40
STREAM_CHUNK = 0x41
STREAM_END = 0x42
STREAM_RESUME = 0x43
STREAM_STATUS = 0x44
STREAM_ABORT = 0x45
CONTEXT_WRITE = 0x50
CONTEXT_GET = 0x51
CONTEXT_LIST = 0x52
CONTEXT_HISTORY = 0x53
CONTEXT_WATCH = 0x54
CONTEXT_UNWATCH = 0x55
CONTEXT_LINEAGE = 0x56
CONTEXT = 0x58
CONTEXT_PAGE = 0x59
CONTEXT_EVENT = 0x5A
CONTEXT_WATCHING = 0x5B
KEY_PUBLISH = 0x60
KEY_FETCH = 0x61
KEY = 0x62

#: Bytes of an X25519 or Ed25519 public key (4.33).
KEY_BYTES = 32
#: Bytes of an Ed25519 signature: a ``rotation`` (4.33).
SIGNATURE_BYTES = 64

#: Most items of a ``list`` (section 2.2).
MAX_LIST = 256

# ---------------------------------------------------------------------------------------------------
# Enumerations (section 2.4). Frame fields are plain ints; these members are ints too.


class TargetKind(enum.IntEnum):
    AGENT = 0
    CAPABILITY = 1
    CONTEXT = 2  # STREAM_OPEN only


class Readiness(enum.IntEnum):
    READY = 0
    BUSY = 1
    DRAINING = 2


class AgentStatus(enum.IntEnum):
    ANY = 0  # DISCOVER filter only
    ONLINE = 1
    OFFLINE = 2


class DeliveryKind(enum.IntEnum):
    DIRECT = 0
    BROADCAST = 1
    TOPIC = 2
    REQUEST = 3


class MessageFlags(enum.IntFlag):
    """The ``flags`` byte that may end SEND, REQUEST, BROADCAST and PUBLISH (version 3); absent means
    none, and an encoder writes it only when a flag is set."""

    DURABLE = 0x01  # stored in PostgreSQL before the answer (REQUEST refuses it)


class Outcome(enum.IntEnum):
    OK = 0
    DELIVERED = 1
    QUEUED = 2


class ReplyStatus(enum.IntEnum):
    OK = 0
    ERROR = 1


class ContextOperation(enum.IntEnum):
    PUT = 0
    CREATE = 1
    UPDATE = 2
    MERGE_PATCH = 3
    JSON_PATCH = 4
    DELETE = 5
    TOUCH = 6


class ContentType(enum.IntEnum):
    BYTES = 0
    JSON = 1
    #: Sealed end to end (5.16): the bus refuses patches and field-level watches (`sealed_body`).
    SEALED = 2


class ContextScope(enum.IntEnum):
    PRIVATE = 0
    GROUP = 1
    SHARED = 2
    TENANT = 3


class ContextState(enum.IntEnum):
    LIVE = 0
    DELETED = 1
    EXPIRED = 2


class ContextStatus(enum.IntEnum):
    BODY = 0
    HEAD = 1
    NOT_MODIFIED = 2
    STREAMED = 3


class WatchStart(enum.IntEnum):
    NOW = 0
    AFTER = 1
    SNAPSHOT = 2


class ContextEventKind(enum.IntEnum):
    CREATED = 0
    UPDATED = 1
    DELETED = 2
    EXPIRED = 3
    SNAPSHOT = 4


class EventPayload(enum.IntEnum):
    NONE = 0
    BODY = 1
    PATCH = 2


class FrameError(Exception):
    """A frame that breaks a decoding rule of section 2.1; ``code`` is the protocol error code
    (1 ``bad_frame``; a reader may use 7 ``too_large`` for an oversized length prefix)."""

    code: int

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------------
# Structs

#: The length prefix and type byte in front of every body.
HEADER = struct.Struct(">IB")

_Buf: TypeAlias = bytes | bytearray | memoryview

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

_pack_header = HEADER.pack
_pack_u8 = _U8.pack
_pack_u16 = _U16.pack
_pack_u32 = _U32.pack
_pack_u64 = _U64.pack
_unpack_u8 = _U8.unpack_from
_unpack_u16 = _U16.unpack_from
_unpack_u32 = _U32.unpack_from
_unpack_u64 = _U64.unpack_from

# Whole frames of fixed size, prefix included.
_ACK_FRAME = struct.Struct(">IBQB")  # ACK, NACK
_REF_FRAME = struct.Struct(">IBQ")  # LOGOUT, PING, PONG, CONFIRM, UNREGISTER
_OK_FRAME = struct.Struct(">IBQBI")
_CREDIT_FRAME = struct.Struct(">IBI")
_WATCHING_FRAME = struct.Struct(">IBQQI")
_REPLY_HEAD = struct.Struct(">IBQBI")  # + payload

# Parts of bodies read on the hot path.
_OK_BODY = struct.Struct(">QBI")  # ref, outcome, recipients
_ERROR_HEAD = struct.Struct(">QHIH")  # ref, code, retry_after_ms, message length
_DELIVER_HEAD = struct.Struct(">QBH")  # delivery_id, kind, from length
_DELIVER_TAIL = struct.Struct(">QQHI")  # correlation_id, deadline_ms, attempt, payload length
_REF_STR = struct.Struct(">QH")  # a ref (u64) and the length of the str after it
_STATUS_PAYLOAD = struct.Struct(">BI")  # status, payload length
_STATUS_TAIL = struct.Struct(">IQ")  # next_index, bytes
_CHUNK_TAIL = struct.Struct(">II")  # index, data length
_HEAD_MIDDLE = struct.Struct(">QQ32sQQQ")  # version, revision, checksum, size, created_ms, updated_ms
_U64_U8 = struct.Struct(">QB")
_U8_U64 = struct.Struct(">BQ")
_AGENT_TAIL = struct.Struct(">BBI")  # status, readiness, in_flight
_WELCOME_LIMITS = struct.Struct(">IIIIII")

# Structs of the fast encoders, by the lengths of their strings.
_send_structs: dict[tuple[int, int], struct.Struct] = {}
_fanout_structs: dict[int, struct.Struct] = {}
_chunk_structs: dict[int, struct.Struct] = {}
_STRUCT_CACHE_MAX = 4096
_Key = TypeVar("_Key")


# ---------------------------------------------------------------------------------------------------
# Composite types (section 2.3)

#: ``key``, ``value``.
MetadataEntry: TypeAlias = tuple[str, str]
#: ``id``, ``version``.
ContextParent: TypeAlias = tuple[str, int]


@dataclass(slots=True)
class AgentDescription:
    """What an agent registers about itself (REGISTER, and inside AgentInfo)."""

    agent_type: str = ""
    capabilities: list[str] = field(default_factory=list)
    location: str = ""
    metadata: list[MetadataEntry] = field(default_factory=list)


@dataclass(slots=True)
class AgentInfo:
    """One agent of a DISCOVERED page. An unknown ``status`` decodes as 2 offline, an unknown
    ``readiness`` as 1 busy (section 2.4)."""

    agent_id: str
    description: AgentDescription
    status: int
    readiness: int
    in_flight: int


@dataclass(slots=True)
class ContextAttributes:
    """What a writer sets about a context besides its body (section 5.13)."""

    kind: str = ""
    content_type: int = 0
    label: str = ""
    scope: int = 0
    readers: list[str] = field(default_factory=list)
    writers: list[str] = field(default_factory=list)
    metadata: list[MetadataEntry] = field(default_factory=list)
    parents: list[ContextParent] = field(default_factory=list)
    source: str = ""


@dataclass(slots=True)
class ContextHead:
    """Everything about one version of a context except its body."""

    id: str
    owner: str
    attributes: ContextAttributes
    version: int
    revision: int
    checksum: bytes
    size: int
    created_ms: int
    updated_ms: int
    updated_by: str
    expires_ms: int
    state: int


# ---------------------------------------------------------------------------------------------------
# Writing helpers (cold path)


def _frame(frame_type: int, parts: list[_Buf]) -> bytes:
    body = b"".join(parts)
    return _pack_header(len(body) + 1, frame_type) + body


def _str(value: str) -> bytes:
    data = value.encode()
    return _pack_u16(len(data)) + data


def _blob(parts: list[_Buf], value: _Buf) -> None:
    parts.append(_pack_u32(len(value)))
    parts.append(value)


def _count(items: Sized) -> bytes:
    if len(items) > MAX_LIST:
        raise ValueError(f"a list holds at most {MAX_LIST} items, not {len(items)}")
    return _pack_u16(len(items))


def _strs(parts: list[_Buf], items: list[str]) -> None:
    parts.append(_count(items))
    parts.extend(_str(item) for item in items)


def _metadata(parts: list[_Buf], entries: list[MetadataEntry]) -> None:
    parts.append(_count(entries))
    for key, value in entries:
        parts.append(_str(key))
        parts.append(_str(value))


def _sha256(value: _Buf) -> _Buf:
    if len(value) != 32:
        raise ValueError(f"a sha256 is 32 bytes, not {len(value)}")
    return value


def _description(parts: list[_Buf], d: AgentDescription) -> None:
    parts.append(_str(d.agent_type))
    _strs(parts, d.capabilities)
    parts.append(_str(d.location))
    _metadata(parts, d.metadata)


def _attributes(parts: list[_Buf], a: ContextAttributes) -> None:
    parts.append(_str(a.kind))
    parts.append(_pack_u8(a.content_type))
    parts.append(_str(a.label))
    parts.append(_pack_u8(a.scope))
    _strs(parts, a.readers)
    _strs(parts, a.writers)
    _metadata(parts, a.metadata)
    parts.append(_count(a.parents))
    for parent_id, version in a.parents:
        parts.append(_str(parent_id))
        parts.append(_pack_u64(version))
    parts.append(_str(a.source))


def _head(parts: list[_Buf], h: ContextHead) -> None:
    parts.append(_str(h.id))
    parts.append(_str(h.owner))
    _attributes(parts, h.attributes)
    checksum = _sha256(h.checksum)
    parts.append(_HEAD_MIDDLE.pack(h.version, h.revision, checksum, h.size, h.created_ms, h.updated_ms))
    parts.append(_str(h.updated_by))
    parts.append(_U64_U8.pack(h.expires_ms, h.state))


# ---------------------------------------------------------------------------------------------------
# Fast encoders (hot path)


def _new_struct(cache: dict[_Key, struct.Struct], key: _Key, fmt: str) -> struct.Struct:
    """The struct of ``fmt``, kept in ``cache`` under ``key`` (the lengths of the strings it packs) for the
    next frame with the same lengths. A full cache is emptied first, so that it stays bounded."""
    if len(cache) >= _STRUCT_CACHE_MAX:
        cache.clear()
    s = cache[key] = struct.Struct(fmt)
    return s


def encode_send(
    frame_type: int,
    ref: int,
    target_kind: int,
    target_name: bytes,
    idempotency_key: bytes,
    deadline_ms: int,
    payload: _Buf,
    flags: int = 0,
) -> bytes:
    """A SEND (0x20) or REQUEST (0x30) frame; ``target_name`` and ``idempotency_key`` UTF-8 encoded.
    ``flags`` (MessageFlags) ends the body when not 0."""
    name_len = len(target_name)
    key_len = len(idempotency_key)
    s = _send_structs.get((name_len, key_len))
    if s is None:
        s = _new_struct(_send_structs, (name_len, key_len), f">IBQBH{name_len}sH{key_len}sQI")
    payload_len = len(payload)
    frame = (
        s.pack(
            26 + name_len + key_len + payload_len + (1 if flags else 0),
            frame_type,
            ref,
            target_kind,
            name_len,
            target_name,
            key_len,
            idempotency_key,
            deadline_ms,
            payload_len,
        )
        + payload
    )
    return frame + _pack_u8(flags) if flags else frame


def encode_fanout(frame_type: int, ref: int, topic: bytes, deadline_ms: int, payload: _Buf, flags: int = 0) -> bytes:
    """A BROADCAST (0x21, ``topic`` empty) or PUBLISH (0x22) frame; ``topic`` UTF-8 encoded. ``flags``
    (MessageFlags) ends the body when not 0."""
    topic_len = len(topic)
    s = _fanout_structs.get(topic_len)
    if s is None:
        s = _new_struct(_fanout_structs, topic_len, f">IBQH{topic_len}sQI")
    payload_len = len(payload)
    length = 23 + topic_len + payload_len + (1 if flags else 0)
    frame = s.pack(length, frame_type, ref, topic_len, topic, deadline_ms, payload_len) + payload
    return frame + _pack_u8(flags) if flags else frame


_pack_ack_frame = _ACK_FRAME.pack


def encode_ack(delivery_id: int, cumulative: bool) -> bytes:
    """An ACK frame: ``delivery_id`` done, or every outstanding delivery up to it when ``cumulative``."""
    return _pack_ack_frame(10, ACK, delivery_id, 1 if cumulative else 0)


def encode_nack(delivery_id: int) -> bytes:
    """A NACK frame: hand ``delivery_id`` back for another attempt."""
    return _pack_ack_frame(10, NACK, delivery_id, 0)


_pack_reply_head = _REPLY_HEAD.pack


def encode_reply(correlation_id: int, status: int, payload: _Buf) -> bytes:
    """A REPLY frame to the request delivered with ``correlation_id``."""
    payload_len = len(payload)
    return _pack_reply_head(14 + payload_len, REPLY, correlation_id, status, payload_len) + payload


def encode_chunk(stream_id: bytes, index: int, data: _Buf) -> bytes:
    """A STREAM_CHUNK frame; ``stream_id`` UTF-8 encoded."""
    id_len = len(stream_id)
    s = _chunk_structs.get(id_len)
    if s is None:
        s = _new_struct(_chunk_structs, id_len, f">IBH{id_len}sII")
    data_len = len(data)
    return s.pack(11 + id_len + data_len, STREAM_CHUNK, id_len, stream_id, index, data_len) + data


# ---------------------------------------------------------------------------------------------------
# Bodies several frames share (section 4: "Both use the same body"; PING and PONG are "like LOGOUT").
# Each is one class with the encoder and the decoder of the body; its frames are subclasses that set
# TYPE. They are siblings: a Request is no Send, and never equal to one.


@dataclass(slots=True)
class _RefOnly:
    """A ``ref`` (u64) alone: LOGOUT, PING, PONG, CONFIRM, UNREGISTER."""

    TYPE: ClassVar[int]
    ref: int

    def encode(self) -> bytes:
        return _REF_FRAME.pack(9, self.TYPE, self.ref)

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        if len(b) != 8:
            raise _end_error(cls.TYPE, 8, len(b))
        return cls(_unpack_u64(b)[0])


@dataclass(slots=True)
class _SendBody:
    """The body of SEND and REQUEST (4.11); ``flags`` is the optional last field (version 3)."""

    TYPE: ClassVar[int]
    ref: int
    target_kind: int
    target_name: str
    idempotency_key: str = ""
    deadline_ms: int = 0
    payload: bytes = b""
    flags: int = 0

    def encode(self) -> bytes:
        return encode_send(
            self.TYPE,
            self.ref,
            self.target_kind,
            self.target_name.encode(),
            self.idempotency_key.encode(),
            self.deadline_ms,
            self.payload,
            self.flags,
        )

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        ref, target_kind = _U64_U8.unpack_from(b)
        if target_kind > 2:
            raise _enum_error(cls.TYPE, "target.kind", target_kind)
        target_name, o = _rstr(b, 9)
        idempotency_key, o = _rstr(b, o)
        (deadline_ms,) = _unpack_u64(b, o)
        payload, o = _rblob(b, o + 8)
        flags, o = _rflags(b, o)
        _done(b, o, cls.TYPE)
        return cls(ref, target_kind, target_name, idempotency_key, deadline_ms, payload, flags)


@dataclass(slots=True)
class _Fanout:
    """The body of BROADCAST and PUBLISH (4.12); ``flags`` is the optional last field (version 3)."""

    TYPE: ClassVar[int]
    ref: int
    topic: str
    deadline_ms: int = 0
    payload: bytes = b""
    flags: int = 0

    def encode(self) -> bytes:
        return encode_fanout(self.TYPE, self.ref, self.topic.encode(), self.deadline_ms, self.payload, self.flags)

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        (ref,) = _unpack_u64(b)
        topic, o = _rstr(b, 8)
        (deadline_ms,) = _unpack_u64(b, o)
        payload, o = _rblob(b, o + 8)
        flags, o = _rflags(b, o)
        _done(b, o, cls.TYPE)
        return cls(ref, topic, deadline_ms, payload, flags)


@dataclass(slots=True)
class _PatternCommand:
    """The body of SUBSCRIBE and UNSUBSCRIBE (4.13)."""

    TYPE: ClassVar[int]
    ref: int
    pattern: str

    def encode(self) -> bytes:
        return _frame(self.TYPE, [_pack_u64(self.ref), _str(self.pattern)])

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        return cls(*_rref_str(b, cls.TYPE))


@dataclass(slots=True)
class _AckBody:
    """The body of ACK and NACK (4.15)."""

    TYPE: ClassVar[int]
    delivery_id: int
    cumulative: bool = False

    def encode(self) -> bytes:
        return _pack_ack_frame(10, self.TYPE, self.delivery_id, 1 if self.cumulative else 0)

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        if len(b) != 9:
            raise _end_error(cls.TYPE, 9, len(b))
        delivery_id, cumulative = _U64_U8.unpack_from(b)
        if cumulative > 1:
            raise FrameError(f"{_NAMES[cls.TYPE]}: the bool cumulative is {cumulative}, not 0 or 1")
        return cls(delivery_id, cumulative == 1)


@dataclass(slots=True)
class _ContextQuery:
    """The body of CONTEXT_HISTORY and CONTEXT_LINEAGE (4.26)."""

    TYPE: ClassVar[int]
    ref: int
    id: str
    selector: int = 0
    depth: int = 0

    def encode(self) -> bytes:
        return _frame(self.TYPE, [_pack_u64(self.ref), _str(self.id), _pack_u16(self.selector), _pack_u16(self.depth)])

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        (ref,) = _unpack_u64(b)
        context_id, o = _rstr(b, 8)
        (selector,) = _unpack_u16(b, o)
        (depth,) = _unpack_u16(b, o + 2)
        _done(b, o + 4, cls.TYPE)
        return cls(ref, context_id, selector, depth)


# ---------------------------------------------------------------------------------------------------
# Frames (section 4)


@dataclass(slots=True)
class Hello:
    """HELLO (0x01), C→S: the first frame of a session."""

    TYPE: ClassVar[int] = HELLO
    version: int
    token: str
    client_name: str = ""

    def encode(self) -> bytes:
        return _frame(HELLO, [_pack_u16(self.version), _str(self.token), _str(self.client_name)])


@dataclass(slots=True)
class Welcome:
    """WELCOME (0x02), S→C: the session is open; the limits of section 3.2 (defaults as defaults)."""

    TYPE: ClassVar[int] = WELCOME
    session_id: int
    tenant: str
    agent_id: str
    max_frame_bytes: int = 1_114_112
    max_inline_payload: int = 1_048_576
    chunk_size: int = 1_048_576
    max_unacked: int = 1024
    max_pending_requests: int = 1024
    heartbeat_interval_ms: int = 5000

    def encode(self) -> bytes:
        return _frame(
            WELCOME,
            [
                _pack_u64(self.session_id),
                _str(self.tenant),
                _str(self.agent_id),
                _WELCOME_LIMITS.pack(
                    self.max_frame_bytes,
                    self.max_inline_payload,
                    self.chunk_size,
                    self.max_unacked,
                    self.max_pending_requests,
                    self.heartbeat_interval_ms,
                ),
            ],
        )


@dataclass(slots=True)
class Error:
    """ERROR (0x03), S→C: a command refused. ``code`` is kept as sent, known to this client or not."""

    TYPE: ClassVar[int] = ERROR
    ref: int
    code: int
    retry_after_ms: int = 0
    message: str = ""

    def encode(self) -> bytes:
        message = self.message.encode()
        return (
            _pack_header(17 + len(message), ERROR)
            + _ERROR_HEAD.pack(self.ref, self.code, self.retry_after_ms, len(message))
            + message
        )


@dataclass(slots=True)
class GoAway:
    """GOAWAY (0x04), S→C: the session ends."""

    TYPE: ClassVar[int] = GOAWAY
    code: int
    message: str = ""

    def encode(self) -> bytes:
        return _frame(GOAWAY, [_pack_u16(self.code), _str(self.message)])


@dataclass(slots=True)
class Ok:
    """OK (0x05), S→C: a command done."""

    TYPE: ClassVar[int] = OK
    ref: int
    outcome: int = 0
    recipients: int = 0

    def encode(self) -> bytes:
        return _OK_FRAME.pack(14, OK, self.ref, self.outcome, self.recipients)


@dataclass(slots=True)
class Login:
    """LOGIN (0x06), C→S before HELLO: an agent's secret for tokens."""

    TYPE: ClassVar[int] = LOGIN
    tenant: str
    agent_id: str
    secret: str

    def encode(self) -> bytes:
        return _frame(LOGIN, [_str(self.tenant), _str(self.agent_id), _str(self.secret)])


@dataclass(slots=True)
class Refresh:
    """REFRESH (0x07), C→S before HELLO: a refresh token for new tokens."""

    TYPE: ClassVar[int] = REFRESH
    refresh_token: str

    def encode(self) -> bytes:
        return _frame(REFRESH, [_str(self.refresh_token)])


@dataclass(slots=True)
class Tokens:
    """TOKENS (0x08), S→C: the answer to LOGIN and REFRESH."""

    TYPE: ClassVar[int] = TOKENS
    access_token: str
    refresh_token: str
    access_expires_in_s: int = 0
    refresh_expires_in_s: int = 0

    def encode(self) -> bytes:
        return _frame(
            TOKENS,
            [
                _str(self.access_token),
                _str(self.refresh_token),
                _pack_u32(self.access_expires_in_s),
                _pack_u32(self.refresh_expires_in_s),
            ],
        )


@dataclass(slots=True)
class Logout(_RefOnly):
    """LOGOUT (0x09), C→S: revoke the session's tokens."""

    TYPE: ClassVar[int] = LOGOUT


@dataclass(slots=True)
class Credit:
    """CREDIT (0x0A), S→C, version 2: more send window."""

    TYPE: ClassVar[int] = CREDIT
    grant: int

    def encode(self) -> bytes:
        return _CREDIT_FRAME.pack(5, CREDIT, self.grant)


@dataclass(slots=True)
class Ping(_RefOnly):
    """PING (0x0B), C→S: answered by PONG once every earlier frame has its immediate answer."""

    TYPE: ClassVar[int] = PING


@dataclass(slots=True)
class Pong(_RefOnly):
    """PONG (0x0C), S→C: the answer to PING."""

    TYPE: ClassVar[int] = PONG


@dataclass(slots=True)
class Confirm(_RefOnly):
    """CONFIRM (0x0D), S→C, version 2: every SEND, BROADCAST, PUBLISH up to ``ref`` without an answer
    of its own succeeded."""

    TYPE: ClassVar[int] = CONFIRM


@dataclass(slots=True)
class Register:
    """REGISTER (0x10), C→S: ``ref`` and the agent's description."""

    TYPE: ClassVar[int] = REGISTER
    ref: int
    description: AgentDescription = field(default_factory=AgentDescription)

    def encode(self) -> bytes:
        parts: list[_Buf] = [_pack_u64(self.ref)]
        _description(parts, self.description)
        return _frame(REGISTER, parts)


@dataclass(slots=True)
class Unregister(_RefOnly):
    """UNREGISTER (0x11), C→S."""

    TYPE: ClassVar[int] = UNREGISTER


@dataclass(slots=True)
class Discover:
    """DISCOVER (0x12), C→S: one page of registered agents; empty filters match any."""

    TYPE: ClassVar[int] = DISCOVER
    ref: int
    agent_type: str = ""
    capability: str = ""
    status: int = 0
    cursor: str = ""
    limit: int = 0

    def encode(self) -> bytes:
        return _frame(
            DISCOVER,
            [
                _pack_u64(self.ref),
                _str(self.agent_type),
                _str(self.capability),
                _pack_u8(self.status),
                _str(self.cursor),
                _pack_u16(self.limit),
            ],
        )


@dataclass(slots=True)
class Discovered:
    """DISCOVERED (0x13), S→C: one page of agents."""

    TYPE: ClassVar[int] = DISCOVERED
    ref: int
    agents: list[AgentInfo] = field(default_factory=list)
    next_cursor: str = ""

    def encode(self) -> bytes:
        parts: list[_Buf] = [_pack_u64(self.ref), _count(self.agents)]
        for agent in self.agents:
            parts.append(_str(agent.agent_id))
            _description(parts, agent.description)
            parts.append(_AGENT_TAIL.pack(agent.status, agent.readiness, agent.in_flight))
        parts.append(_str(self.next_cursor))
        return _frame(DISCOVERED, parts)


@dataclass(slots=True)
class Heartbeat:
    """HEARTBEAT (0x14), C→S: alive, and its readiness."""

    TYPE: ClassVar[int] = HEARTBEAT
    readiness: int = 0

    def encode(self) -> bytes:
        return _frame(HEARTBEAT, [_pack_u8(self.readiness)])


@dataclass(slots=True)
class Send(_SendBody):
    """SEND (0x20), C→S: a message to one agent (by id or capability)."""

    TYPE: ClassVar[int] = SEND


@dataclass(slots=True)
class Broadcast(_Fanout):
    """BROADCAST (0x21), C→S: to every other live session of the tenant; ``topic`` must be empty."""

    TYPE: ClassVar[int] = BROADCAST
    topic: str = ""


@dataclass(slots=True)
class Publish(_Fanout):
    """PUBLISH (0x22), C→S: to every session subscribed to a matching pattern."""

    TYPE: ClassVar[int] = PUBLISH


@dataclass(slots=True)
class Subscribe(_PatternCommand):
    """SUBSCRIBE (0x23), C→S."""

    TYPE: ClassVar[int] = SUBSCRIBE


@dataclass(slots=True)
class Unsubscribe(_PatternCommand):
    """UNSUBSCRIBE (0x24), C→S."""

    TYPE: ClassVar[int] = UNSUBSCRIBE


@dataclass(slots=True)
class Deliver:
    """DELIVER (0x25), S→C: a message handed over, to ACK or NACK. The protocol's ``from`` is ``from_``.

    ``message_id``, the optional last field, comes under version 3 only: the id of the message's stored
    copy, the same on every redelivery (0 for a message held in memory only); None is a frame without
    it, as a server writes DELIVER under version 1 and 2."""

    TYPE: ClassVar[int] = DELIVER
    delivery_id: int
    kind: int
    from_: str
    subject: str = ""
    correlation_id: int = 0
    deadline_ms: int = 0
    attempt: int = 1
    payload: bytes = b""
    message_id: int | None = None

    def encode(self) -> bytes:
        sender = self.from_.encode()
        subject = self.subject.encode()
        payload = self.payload
        message_id = b"" if self.message_id is None else _pack_u64(self.message_id)
        return b"".join(
            (
                _pack_header(36 + len(sender) + len(subject) + len(payload) + len(message_id), DELIVER),
                _DELIVER_HEAD.pack(self.delivery_id, self.kind, len(sender)),
                sender,
                _pack_u16(len(subject)),
                subject,
                _DELIVER_TAIL.pack(self.correlation_id, self.deadline_ms, self.attempt, len(payload)),
                payload,
                message_id,
            )
        )


@dataclass(slots=True)
class Ack(_AckBody):
    """ACK (0x26), C→S."""

    TYPE: ClassVar[int] = ACK


@dataclass(slots=True)
class Nack(_AckBody):
    """NACK (0x27), C→S; ``cumulative`` is ignored by the server (send False)."""

    TYPE: ClassVar[int] = NACK


@dataclass(slots=True)
class Request(_SendBody):
    """REQUEST (0x30), C→S: the body of SEND; answered by RESPONSE."""

    TYPE: ClassVar[int] = REQUEST


@dataclass(slots=True)
class Reply:
    """REPLY (0x31), C→S: the answer to a DELIVER of kind request."""

    TYPE: ClassVar[int] = REPLY
    correlation_id: int
    status: int = 0
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_reply(self.correlation_id, self.status, self.payload)


@dataclass(slots=True)
class Response:
    """RESPONSE (0x32), S→C: the REPLY to a REQUEST. The protocol's ``from`` is ``from_``."""

    TYPE: ClassVar[int] = RESPONSE
    ref: int
    from_: str
    status: int = 0
    payload: bytes = b""

    def encode(self) -> bytes:
        sender = self.from_.encode()
        payload = self.payload
        return b"".join(
            (
                _pack_header(16 + len(sender) + len(payload), RESPONSE),
                _REF_STR.pack(self.ref, len(sender)),
                sender,
                _STATUS_PAYLOAD.pack(self.status, len(payload)),
                payload,
            )
        )


@dataclass(slots=True)
class StreamOpen:
    """STREAM_OPEN (0x40), both: C→S opens an upload; S→C starts a download (``ref`` = delivery id)."""

    TYPE: ClassVar[int] = STREAM_OPEN
    ref: int
    stream_id: str
    target_kind: int
    target_name: str
    total_size: int
    chunk_size: int
    sha256: bytes
    deadline_ms: int = 0

    def encode(self) -> bytes:
        return _frame(
            STREAM_OPEN,
            [
                _pack_u64(self.ref),
                _str(self.stream_id),
                _pack_u8(self.target_kind),
                _str(self.target_name),
                _pack_u64(self.total_size),
                _pack_u32(self.chunk_size),
                _sha256(self.sha256),
                _pack_u64(self.deadline_ms),
            ],
        )


@dataclass(slots=True)
class StreamChunk:
    """STREAM_CHUNK (0x41), both."""

    TYPE: ClassVar[int] = STREAM_CHUNK
    stream_id: str
    index: int
    data: bytes

    def encode(self) -> bytes:
        return encode_chunk(self.stream_id.encode(), self.index, self.data)


@dataclass(slots=True)
class StreamEnd:
    """STREAM_END (0x42), both. ``sha256``, the optional last field (C→S only): the payload's
    SHA-256, for an upload whose STREAM_OPEN gave 32 zero bytes (4.20)."""

    TYPE: ClassVar[int] = STREAM_END
    ref: int
    stream_id: str
    sha256: bytes | None = None

    def encode(self) -> bytes:
        fields: list[_Buf] = [_pack_u64(self.ref), _str(self.stream_id)]
        if self.sha256 is not None:
            fields.append(_sha256(self.sha256))
        return _frame(self.TYPE, fields)

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        (ref,) = _unpack_u64(b)
        stream_id, o = _rstr(b, 8)
        if o == len(b):
            return cls(ref, stream_id)
        _done(b, o + 32, STREAM_END)
        return cls(ref, stream_id, b[o : o + 32].tobytes())


@dataclass(slots=True)
class StreamResume:
    """STREAM_RESUME (0x43), C→S: where does an upload stand (4.20)."""

    TYPE: ClassVar[int] = STREAM_RESUME
    ref: int
    stream_id: str

    def encode(self) -> bytes:
        return _frame(self.TYPE, [_pack_u64(self.ref), _str(self.stream_id)])

    @classmethod
    def _decode(cls, b: memoryview) -> Self:
        return cls(*_rref_str(b, cls.TYPE))


@dataclass(slots=True)
class StreamStatus:
    """STREAM_STATUS (0x44), both: chunks 0 to ``next_index`` - 1 are held, ``bytes`` bytes."""

    TYPE: ClassVar[int] = STREAM_STATUS
    ref: int
    stream_id: str
    next_index: int = 0
    bytes: int = 0

    def encode(self) -> builtins.bytes:
        stream_id = self.stream_id.encode()
        return (
            _pack_header(23 + len(stream_id), STREAM_STATUS)
            + _REF_STR.pack(self.ref, len(stream_id))
            + stream_id
            + _STATUS_TAIL.pack(self.next_index, self.bytes)
        )


@dataclass(slots=True)
class StreamAbort:
    """STREAM_ABORT (0x45), both. ``code`` kept as sent; 20 ``unavailable`` is what a client sends."""

    TYPE: ClassVar[int] = STREAM_ABORT
    stream_id: str
    code: int = 20
    message: str = ""

    def encode(self) -> bytes:
        return _frame(STREAM_ABORT, [_str(self.stream_id), _pack_u16(self.code), _str(self.message)])


@dataclass(slots=True)
class ContextWrite:
    """CONTEXT_WRITE (0x50), C→S. ``attributes`` None is ``has_attributes`` 0 (keep them)."""

    TYPE: ClassVar[int] = CONTEXT_WRITE
    ref: int
    operation: int
    id: str
    expected_version: int = 0
    ttl_ms: int = 0
    attributes: ContextAttributes | None = None
    body: bytes = b""
    body_stream: str = ""

    def encode(self) -> bytes:
        parts: list[_Buf] = [
            _U64_U8.pack(self.ref, self.operation),
            _str(self.id),
            _pack_u64(self.expected_version),
            _pack_u64(self.ttl_ms),
        ]
        if self.attributes is None:
            parts.append(b"\x00")
        else:
            parts.append(b"\x01")
            _attributes(parts, self.attributes)
        _blob(parts, self.body)
        parts.append(_str(self.body_stream))
        return _frame(CONTEXT_WRITE, parts)


@dataclass(slots=True)
class ContextGet:
    """CONTEXT_GET (0x51), C→S."""

    TYPE: ClassVar[int] = CONTEXT_GET
    ref: int
    id: str
    version: int = 0
    if_newer_than: int = 0

    def encode(self) -> bytes:
        return _frame(
            CONTEXT_GET,
            [_pack_u64(self.ref), _str(self.id), _pack_u64(self.version), _pack_u64(self.if_newer_than)],
        )


@dataclass(slots=True)
class ContextList:
    """CONTEXT_LIST (0x52), C→S: one page of live contexts; empty filters match any."""

    TYPE: ClassVar[int] = CONTEXT_LIST
    ref: int
    kind: str = ""
    owner: str = ""
    pattern: str = ""
    prefix: str = ""
    metadata: list[MetadataEntry] = field(default_factory=list)
    cursor: str = ""
    limit: int = 0

    def encode(self) -> bytes:
        parts: list[_Buf] = [
            _pack_u64(self.ref),
            _str(self.kind),
            _str(self.owner),
            _str(self.pattern),
            _str(self.prefix),
        ]
        _metadata(parts, self.metadata)
        parts.append(_str(self.cursor))
        parts.append(_pack_u16(self.limit))
        return _frame(CONTEXT_LIST, parts)


@dataclass(slots=True)
class ContextHistory(_ContextQuery):
    """CONTEXT_HISTORY (0x53), C→S: ``selector`` versions (0 all kept); ``depth`` ignored (send 0)."""

    TYPE: ClassVar[int] = CONTEXT_HISTORY


@dataclass(slots=True)
class ContextWatch:
    """CONTEXT_WATCH (0x54), C→S: ``ref`` names the watch."""

    TYPE: ClassVar[int] = CONTEXT_WATCH
    ref: int
    target: str
    start: int = 0
    after: int = 0
    paths: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        parts: list[_Buf] = [
            _pack_u64(self.ref),
            _str(self.target),
            _pack_u8(self.start),
            _pack_u64(self.after),
        ]
        _strs(parts, self.paths)
        return _frame(CONTEXT_WATCH, parts)


@dataclass(slots=True)
class ContextUnwatch:
    """CONTEXT_UNWATCH (0x55), C→S: end the watch ``watch``."""

    TYPE: ClassVar[int] = CONTEXT_UNWATCH
    ref: int
    watch: int

    def encode(self) -> bytes:
        return _frame(CONTEXT_UNWATCH, [_pack_u64(self.ref), _pack_u64(self.watch)])


@dataclass(slots=True)
class ContextLineage(_ContextQuery):
    """CONTEXT_LINEAGE (0x56), C→S: ``selector`` 0 ancestors, 1 descendants; ``depth`` 0 means 16."""

    TYPE: ClassVar[int] = CONTEXT_LINEAGE


@dataclass(slots=True)
class Context:
    """CONTEXT (0x58), S→C: the answer to CONTEXT_WRITE and CONTEXT_GET."""

    TYPE: ClassVar[int] = CONTEXT
    ref: int
    status: int
    head: ContextHead
    body: bytes = b""

    def encode(self) -> bytes:
        parts: list[_Buf] = [_U64_U8.pack(self.ref, self.status)]
        _head(parts, self.head)
        _blob(parts, self.body)
        return _frame(CONTEXT, parts)


@dataclass(slots=True)
class ContextPage:
    """CONTEXT_PAGE (0x59), S→C: heads, no bodies."""

    TYPE: ClassVar[int] = CONTEXT_PAGE
    ref: int
    heads: list[ContextHead] = field(default_factory=list)
    next_cursor: str = ""

    def encode(self) -> bytes:
        parts: list[_Buf] = [_pack_u64(self.ref), _count(self.heads)]
        for head in self.heads:
            _head(parts, head)
        parts.append(_str(self.next_cursor))
        return _frame(CONTEXT_PAGE, parts)


@dataclass(slots=True)
class ContextEvent:
    """CONTEXT_EVENT (0x5A), S→C: a change seen by the watch ``watch``."""

    TYPE: ClassVar[int] = CONTEXT_EVENT
    watch: int
    event: int
    head: ContextHead
    payload_kind: int = 0
    payload: bytes = b""

    def encode(self) -> bytes:
        parts: list[_Buf] = [_U64_U8.pack(self.watch, self.event)]
        _head(parts, self.head)
        parts.append(_pack_u8(self.payload_kind))
        _blob(parts, self.payload)
        return _frame(CONTEXT_EVENT, parts)


@dataclass(slots=True)
class ContextWatching:
    """CONTEXT_WATCHING (0x5B), S→C: the watch ``ref`` runs."""

    TYPE: ClassVar[int] = CONTEXT_WATCHING
    ref: int
    position: int = 0
    replayed: int = 0

    def encode(self) -> bytes:
        return _WATCHING_FRAME.pack(21, CONTEXT_WATCHING, self.ref, self.position, self.replayed)


def _keys(box_key: bytes, sign_key: bytes) -> bytes:
    if len(box_key) != KEY_BYTES or len(sign_key) != KEY_BYTES:
        raise ValueError(f"box_key and sign_key are {KEY_BYTES} bytes each")
    return box_key + sign_key


@dataclass(slots=True)
class KeyPublish:
    """KEY_PUBLISH (0x60), C→S: the sender's public keys for end-to-end encryption (5.16).

    ``rotation`` is empty, or the current signing key's 64-byte Ed25519 signature over
    ``b"acb.key.rotate.v1" + box_key + sign_key``.
    """

    TYPE: ClassVar[int] = KEY_PUBLISH
    ref: int
    box_key: bytes
    sign_key: bytes
    rotation: bytes = b""

    def encode(self) -> bytes:
        parts: list[_Buf] = [_pack_u64(self.ref), _keys(self.box_key, self.sign_key)]
        _blob(parts, self.rotation)
        return _frame(KEY_PUBLISH, parts)


@dataclass(slots=True)
class KeyFetch:
    """KEY_FETCH (0x61), C→S: the published keys of an agent of the caller's tenant."""

    TYPE: ClassVar[int] = KEY_FETCH
    ref: int
    agent_id: str

    def encode(self) -> bytes:
        return _frame(KEY_FETCH, [_pack_u64(self.ref), _str(self.agent_id)])


@dataclass(slots=True)
class Key:
    """KEY (0x62), S→C: the answer to KEY_FETCH."""

    TYPE: ClassVar[int] = KEY
    ref: int
    agent_id: str
    box_key: bytes
    sign_key: bytes
    rotation: bytes = b""
    previous_sign_key: bytes = b""
    revoked: bool = False
    published_ms: int = 0

    def encode(self) -> bytes:
        parts: list[_Buf] = [_pack_u64(self.ref), _str(self.agent_id), _keys(self.box_key, self.sign_key)]
        _blob(parts, self.rotation)
        _blob(parts, self.previous_sign_key)
        parts += [_pack_u8(int(self.revoked)), _pack_u64(self.published_ms)]
        return _frame(KEY, parts)


Frame: TypeAlias = (
    Hello
    | Welcome
    | Error
    | GoAway
    | Ok
    | Login
    | Refresh
    | Tokens
    | Logout
    | Credit
    | Ping
    | Pong
    | Confirm
    | Register
    | Unregister
    | Discover
    | Discovered
    | Heartbeat
    | Send
    | Broadcast
    | Publish
    | Subscribe
    | Unsubscribe
    | Deliver
    | Ack
    | Nack
    | Request
    | Reply
    | Response
    | StreamOpen
    | StreamChunk
    | StreamEnd
    | StreamResume
    | StreamStatus
    | StreamAbort
    | ContextWrite
    | ContextGet
    | ContextList
    | ContextHistory
    | ContextWatch
    | ContextUnwatch
    | ContextLineage
    | Context
    | ContextPage
    | ContextEvent
    | ContextWatching
    | KeyPublish
    | KeyFetch
    | Key
)

#: The frame class of each type byte.
FRAME_CLASSES: dict[int, type[Frame]] = {cls.TYPE: cls for cls in get_args(Frame)}

_NAMES: dict[int, str] = {
    HELLO: "HELLO",
    WELCOME: "WELCOME",
    ERROR: "ERROR",
    GOAWAY: "GOAWAY",
    OK: "OK",
    LOGIN: "LOGIN",
    REFRESH: "REFRESH",
    TOKENS: "TOKENS",
    LOGOUT: "LOGOUT",
    CREDIT: "CREDIT",
    PING: "PING",
    PONG: "PONG",
    CONFIRM: "CONFIRM",
    REGISTER: "REGISTER",
    UNREGISTER: "UNREGISTER",
    DISCOVER: "DISCOVER",
    DISCOVERED: "DISCOVERED",
    HEARTBEAT: "HEARTBEAT",
    SEND: "SEND",
    BROADCAST: "BROADCAST",
    PUBLISH: "PUBLISH",
    SUBSCRIBE: "SUBSCRIBE",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    DELIVER: "DELIVER",
    ACK: "ACK",
    NACK: "NACK",
    REQUEST: "REQUEST",
    REPLY: "REPLY",
    RESPONSE: "RESPONSE",
    STREAM_OPEN: "STREAM_OPEN",
    STREAM_CHUNK: "STREAM_CHUNK",
    STREAM_END: "STREAM_END",
    STREAM_RESUME: "STREAM_RESUME",
    STREAM_STATUS: "STREAM_STATUS",
    STREAM_ABORT: "STREAM_ABORT",
    CONTEXT_WRITE: "CONTEXT_WRITE",
    CONTEXT_GET: "CONTEXT_GET",
    CONTEXT_LIST: "CONTEXT_LIST",
    CONTEXT_HISTORY: "CONTEXT_HISTORY",
    CONTEXT_WATCH: "CONTEXT_WATCH",
    CONTEXT_UNWATCH: "CONTEXT_UNWATCH",
    CONTEXT_LINEAGE: "CONTEXT_LINEAGE",
    CONTEXT: "CONTEXT",
    CONTEXT_PAGE: "CONTEXT_PAGE",
    CONTEXT_EVENT: "CONTEXT_EVENT",
    CONTEXT_WATCHING: "CONTEXT_WATCHING",
    KEY_PUBLISH: "KEY_PUBLISH",
    KEY_FETCH: "KEY_FETCH",
    KEY: "KEY",
}


# ---------------------------------------------------------------------------------------------------
# Reading helpers
#
# A read past the end of the body raises struct.error (from unpack_from, or raised here for a str or
# bytes cut short); decode() turns it and UnicodeDecodeError into FrameError. A str or bytes read with
# a slice is checked explicitly, or, on the hot path, by the unpack_from or end check right after it:
# unpack_from refuses an offset past the end of the buffer.


class _Truncated(struct.error):
    """A str or bytes runs past the end of the body."""


class _ListTooLong(Exception):
    """A list count over MAX_LIST."""


def _end_error(frame_type: int, end: int, size: int) -> FrameError:
    name = _NAMES[frame_type]
    if end > size:
        return FrameError(f"{name}: the body ends inside a field")
    return FrameError(f"{name}: {size - end} bytes left after the last field")


def _enum_error(frame_type: int, field_name: str, value: int) -> FrameError:
    return FrameError(f"{_NAMES[frame_type]}: {field_name} {value} is not one of its values")


def _done(b: memoryview, o: int, frame_type: int) -> None:
    if o != len(b):
        raise _end_error(frame_type, o, len(b))


def _rstr(b: memoryview, o: int) -> tuple[str, int]:
    (n,) = _unpack_u16(b, o)
    o += 2
    e = o + n
    if e > len(b):
        raise _Truncated
    return b[o:e].tobytes().decode(), e


def _rref_str(b: memoryview, frame_type: int) -> tuple[int, str]:
    """A body of a ``ref`` and a ``str``, nothing after."""
    (ref,) = _unpack_u64(b)
    text, o = _rstr(b, 8)
    _done(b, o, frame_type)
    return ref, text


def _rblob(b: memoryview, o: int) -> tuple[bytes, int]:
    (n,) = _unpack_u32(b, o)
    o += 4
    e = o + n
    if e > len(b):
        raise _Truncated
    return b[o:e].tobytes(), e


def _rflags(b: memoryview, o: int) -> tuple[int, int]:
    """The optional ``flags`` byte that may end a body at ``o``: 0 when the body ends there."""
    if o == len(b):
        return 0, o
    return _unpack_u8(b, o)[0], o + 1


def _rcount(b: memoryview, o: int) -> tuple[int, int]:
    (n,) = _unpack_u16(b, o)
    if n > MAX_LIST:
        raise _ListTooLong(n)
    return n, o + 2


def _rstrs(b: memoryview, o: int) -> tuple[list[str], int]:
    n, o = _rcount(b, o)
    items: list[str] = []
    for _ in range(n):
        item, o = _rstr(b, o)
        items.append(item)
    return items, o


def _rmetadata(b: memoryview, o: int) -> tuple[list[MetadataEntry], int]:
    n, o = _rcount(b, o)
    entries: list[MetadataEntry] = []
    for _ in range(n):
        key, o = _rstr(b, o)
        value, o = _rstr(b, o)
        entries.append((key, value))
    return entries, o


def _rdescription(b: memoryview, o: int) -> tuple[AgentDescription, int]:
    agent_type, o = _rstr(b, o)
    capabilities, o = _rstrs(b, o)
    location, o = _rstr(b, o)
    metadata, o = _rmetadata(b, o)
    return AgentDescription(agent_type, capabilities, location, metadata), o


def _rattributes(b: memoryview, o: int, frame_type: int) -> tuple[ContextAttributes, int]:
    kind, o = _rstr(b, o)
    (content_type,) = _unpack_u8(b, o)
    if content_type > 2:
        raise _enum_error(frame_type, "content_type", content_type)
    label, o = _rstr(b, o + 1)
    (scope,) = _unpack_u8(b, o)
    if scope > 3:
        raise _enum_error(frame_type, "scope", scope)
    readers, o = _rstrs(b, o + 1)
    writers, o = _rstrs(b, o)
    metadata, o = _rmetadata(b, o)
    n, o = _rcount(b, o)
    parents: list[ContextParent] = []
    for _ in range(n):
        parent_id, o = _rstr(b, o)
        (version,) = _unpack_u64(b, o)
        o += 8
        parents.append((parent_id, version))
    source, o = _rstr(b, o)
    return ContextAttributes(kind, content_type, label, scope, readers, writers, metadata, parents, source), o


def _rhead(b: memoryview, o: int, frame_type: int) -> tuple[ContextHead, int]:
    context_id, o = _rstr(b, o)
    owner, o = _rstr(b, o)
    attributes, o = _rattributes(b, o, frame_type)
    version, revision, checksum, size, created_ms, updated_ms = _HEAD_MIDDLE.unpack_from(b, o)
    updated_by, o = _rstr(b, o + 72)
    expires_ms, state = _U64_U8.unpack_from(b, o)
    if state > 2:
        raise _enum_error(frame_type, "state", state)
    head = ContextHead(
        context_id,
        owner,
        attributes,
        version,
        revision,
        checksum,
        size,
        created_ms,
        updated_ms,
        updated_by,
        expires_ms,
        state,
    )
    return head, o + 9


# ---------------------------------------------------------------------------------------------------
# Decoders, one per type byte (a body that several frames share decodes in its class, above). Hot ones
# first, written out by hand.


def _d_deliver(b: memoryview) -> Deliver:
    delivery_id, kind, n = _DELIVER_HEAD.unpack_from(b, 0)
    e = 11 + n
    sender = b[11:e].tobytes().decode()
    (n,) = _unpack_u16(b, e)
    o = e + 2
    e = o + n
    subject = b[o:e].tobytes().decode() if n else ""
    correlation_id, deadline_ms, attempt, n = _DELIVER_TAIL.unpack_from(b, e)
    o = e + 22
    e = o + n
    size = len(b)
    if e == size:
        message_id: int | None = None
    elif e + 8 == size:  # version 3: message_id, the optional last field
        (message_id,) = _unpack_u64(b, e)
    else:
        raise _end_error(DELIVER, e if e > size else e + 8, size)
    if kind > 3:
        raise _enum_error(DELIVER, "kind", kind)
    payload = b[o:e].tobytes()
    return Deliver(delivery_id, kind, sender, subject, correlation_id, deadline_ms, attempt, payload, message_id)


def _d_ok(b: memoryview) -> Ok:
    if len(b) != 13:
        raise _end_error(OK, 13, len(b))
    ref, outcome, recipients = _OK_BODY.unpack_from(b)
    if outcome > 2:
        raise _enum_error(OK, "outcome", outcome)
    return Ok(ref, outcome, recipients)


def _d_credit(b: memoryview) -> Credit:
    if len(b) != 4:
        raise _end_error(CREDIT, 4, len(b))
    return Credit(_unpack_u32(b)[0])


def _d_error(b: memoryview) -> Error:
    ref, code, retry_after_ms, n = _ERROR_HEAD.unpack_from(b)
    e = 16 + n
    if e != len(b):
        raise _end_error(ERROR, e, len(b))
    return Error(ref, code, retry_after_ms, b[16:e].tobytes().decode())


def _d_response(b: memoryview) -> Response:
    ref, n = _REF_STR.unpack_from(b)
    e = 10 + n
    sender = b[10:e].tobytes().decode()
    status, n = _STATUS_PAYLOAD.unpack_from(b, e)
    o = e + 5
    e = o + n
    if e != len(b):
        raise _end_error(RESPONSE, e, len(b))
    if status > 1:
        raise _enum_error(RESPONSE, "status", status)
    return Response(ref, sender, status, b[o:e].tobytes())


def _d_stream_status(b: memoryview) -> StreamStatus:
    ref, n = _REF_STR.unpack_from(b)
    e = 10 + n
    stream_id = b[10:e].tobytes().decode()
    next_index, size = _STATUS_TAIL.unpack_from(b, e)
    if e + 12 != len(b):
        raise _end_error(STREAM_STATUS, e + 12, len(b))
    return StreamStatus(ref, stream_id, next_index, size)


def _d_stream_chunk(b: memoryview) -> StreamChunk:
    (n,) = _unpack_u16(b)
    e = 2 + n
    stream_id = b[2:e].tobytes().decode()
    index, n = _CHUNK_TAIL.unpack_from(b, e)
    o = e + 8
    e = o + n
    if e != len(b):
        raise _end_error(STREAM_CHUNK, e, len(b))
    return StreamChunk(stream_id, index, b[o:e].tobytes())


def _d_hello(b: memoryview) -> Hello:
    (version,) = _unpack_u16(b)
    token, o = _rstr(b, 2)
    client_name, o = _rstr(b, o)
    _done(b, o, HELLO)
    return Hello(version, token, client_name)


def _d_welcome(b: memoryview) -> Welcome:
    (session_id,) = _unpack_u64(b)
    tenant, o = _rstr(b, 8)
    agent_id, o = _rstr(b, o)
    limits = _WELCOME_LIMITS.unpack_from(b, o)
    _done(b, o + 24, WELCOME)
    return Welcome(session_id, tenant, agent_id, *limits)


def _d_goaway(b: memoryview) -> GoAway:
    (code,) = _unpack_u16(b)
    message, o = _rstr(b, 2)
    _done(b, o, GOAWAY)
    return GoAway(code, message)


def _d_login(b: memoryview) -> Login:
    tenant, o = _rstr(b, 0)
    agent_id, o = _rstr(b, o)
    secret, o = _rstr(b, o)
    _done(b, o, LOGIN)
    return Login(tenant, agent_id, secret)


def _d_refresh(b: memoryview) -> Refresh:
    token, o = _rstr(b, 0)
    _done(b, o, REFRESH)
    return Refresh(token)


def _d_tokens(b: memoryview) -> Tokens:
    access_token, o = _rstr(b, 0)
    refresh_token, o = _rstr(b, o)
    (access_expires,) = _unpack_u32(b, o)
    (refresh_expires,) = _unpack_u32(b, o + 4)
    _done(b, o + 8, TOKENS)
    return Tokens(access_token, refresh_token, access_expires, refresh_expires)


def _d_register(b: memoryview) -> Register:
    (ref,) = _unpack_u64(b)
    description, o = _rdescription(b, 8)
    _done(b, o, REGISTER)
    return Register(ref, description)


def _d_discover(b: memoryview) -> Discover:
    (ref,) = _unpack_u64(b)
    agent_type, o = _rstr(b, 8)
    capability, o = _rstr(b, o)
    (status,) = _unpack_u8(b, o)
    if status > 2:
        raise _enum_error(DISCOVER, "status", status)
    cursor, o = _rstr(b, o + 1)
    (limit,) = _unpack_u16(b, o)
    _done(b, o + 2, DISCOVER)
    return Discover(ref, agent_type, capability, status, cursor, limit)


def _d_discovered(b: memoryview) -> Discovered:
    (ref,) = _unpack_u64(b)
    n, o = _rcount(b, 8)
    agents: list[AgentInfo] = []
    for _ in range(n):
        agent_id, o = _rstr(b, o)
        description, o = _rdescription(b, o)
        status, readiness, in_flight = _AGENT_TAIL.unpack_from(b, o)
        o += 6
        # Tolerated (section 2.4): an unknown status reads as 2 offline, an unknown readiness as 1 busy.
        status = min(status, 2)
        if readiness > 2:
            readiness = 1
        agents.append(AgentInfo(agent_id, description, status, readiness, in_flight))
    cursor, o = _rstr(b, o)
    _done(b, o, DISCOVERED)
    return Discovered(ref, agents, cursor)


def _d_heartbeat(b: memoryview) -> Heartbeat:
    if len(b) != 1:
        raise _end_error(HEARTBEAT, 1, len(b))
    readiness = b[0]
    if readiness > 2:
        raise _enum_error(HEARTBEAT, "readiness", readiness)
    return Heartbeat(readiness)


def _d_reply(b: memoryview) -> Reply:
    correlation_id, status = _U64_U8.unpack_from(b)
    payload, o = _rblob(b, 9)
    _done(b, o, REPLY)
    if status > 1:
        raise _enum_error(REPLY, "status", status)
    return Reply(correlation_id, status, payload)


def _d_stream_open(b: memoryview) -> StreamOpen:
    (ref,) = _unpack_u64(b)
    stream_id, o = _rstr(b, 8)
    (target_kind,) = _unpack_u8(b, o)
    if target_kind > 2:
        raise _enum_error(STREAM_OPEN, "target.kind", target_kind)
    target_name, o = _rstr(b, o + 1)
    (total_size,) = _unpack_u64(b, o)
    (chunk_size,) = _unpack_u32(b, o + 8)
    o += 12
    sha256 = b[o : o + 32].tobytes()
    (deadline_ms,) = _unpack_u64(b, o + 32)
    _done(b, o + 40, STREAM_OPEN)
    return StreamOpen(ref, stream_id, target_kind, target_name, total_size, chunk_size, sha256, deadline_ms)


def _d_stream_abort(b: memoryview) -> StreamAbort:
    stream_id, o = _rstr(b, 0)
    (code,) = _unpack_u16(b, o)
    message, o = _rstr(b, o + 2)
    _done(b, o, STREAM_ABORT)
    return StreamAbort(stream_id, code, message)


def _d_context_write(b: memoryview) -> ContextWrite:
    ref, operation = _U64_U8.unpack_from(b)
    if operation > 6:
        raise _enum_error(CONTEXT_WRITE, "operation", operation)
    context_id, o = _rstr(b, 9)
    (expected_version,) = _unpack_u64(b, o)
    (ttl_ms,) = _unpack_u64(b, o + 8)
    (has_attributes,) = _unpack_u8(b, o + 16)
    o += 17
    attributes: ContextAttributes | None = None
    if has_attributes == 1:
        attributes, o = _rattributes(b, o, CONTEXT_WRITE)
    elif has_attributes != 0:
        raise FrameError(f"CONTEXT_WRITE: the bool has_attributes is {has_attributes}, not 0 or 1")
    body, o = _rblob(b, o)
    body_stream, o = _rstr(b, o)
    _done(b, o, CONTEXT_WRITE)
    return ContextWrite(ref, operation, context_id, expected_version, ttl_ms, attributes, body, body_stream)


def _d_context_get(b: memoryview) -> ContextGet:
    (ref,) = _unpack_u64(b)
    context_id, o = _rstr(b, 8)
    (version,) = _unpack_u64(b, o)
    (if_newer_than,) = _unpack_u64(b, o + 8)
    _done(b, o + 16, CONTEXT_GET)
    return ContextGet(ref, context_id, version, if_newer_than)


def _d_context_list(b: memoryview) -> ContextList:
    (ref,) = _unpack_u64(b)
    kind, o = _rstr(b, 8)
    owner, o = _rstr(b, o)
    pattern, o = _rstr(b, o)
    prefix, o = _rstr(b, o)
    metadata, o = _rmetadata(b, o)
    cursor, o = _rstr(b, o)
    (limit,) = _unpack_u16(b, o)
    _done(b, o + 2, CONTEXT_LIST)
    return ContextList(ref, kind, owner, pattern, prefix, metadata, cursor, limit)


def _d_context_watch(b: memoryview) -> ContextWatch:
    (ref,) = _unpack_u64(b)
    target, o = _rstr(b, 8)
    start, after = _U8_U64.unpack_from(b, o)
    if start > 2:
        raise _enum_error(CONTEXT_WATCH, "start", start)
    paths, o = _rstrs(b, o + 9)
    _done(b, o, CONTEXT_WATCH)
    return ContextWatch(ref, target, start, after, paths)


def _d_context_unwatch(b: memoryview) -> ContextUnwatch:
    if len(b) != 16:
        raise _end_error(CONTEXT_UNWATCH, 16, len(b))
    return ContextUnwatch(_unpack_u64(b)[0], _unpack_u64(b, 8)[0])


def _d_context(b: memoryview) -> Context:
    ref, status = _U64_U8.unpack_from(b)
    if status > 3:
        raise _enum_error(CONTEXT, "status", status)
    head, o = _rhead(b, 9, CONTEXT)
    body, o = _rblob(b, o)
    _done(b, o, CONTEXT)
    return Context(ref, status, head, body)


def _d_context_page(b: memoryview) -> ContextPage:
    (ref,) = _unpack_u64(b)
    n, o = _rcount(b, 8)
    heads: list[ContextHead] = []
    for _ in range(n):
        head, o = _rhead(b, o, CONTEXT_PAGE)
        heads.append(head)
    cursor, o = _rstr(b, o)
    _done(b, o, CONTEXT_PAGE)
    return ContextPage(ref, heads, cursor)


def _d_context_event(b: memoryview) -> ContextEvent:
    watch, event = _U64_U8.unpack_from(b)
    if event > 4:
        raise _enum_error(CONTEXT_EVENT, "event", event)
    head, o = _rhead(b, 9, CONTEXT_EVENT)
    (payload_kind,) = _unpack_u8(b, o)
    if payload_kind > 2:
        raise _enum_error(CONTEXT_EVENT, "payload_kind", payload_kind)
    payload, o = _rblob(b, o + 1)
    _done(b, o, CONTEXT_EVENT)
    return ContextEvent(watch, event, head, payload_kind, payload)


def _d_context_watching(b: memoryview) -> ContextWatching:
    if len(b) != 20:
        raise _end_error(CONTEXT_WATCHING, 20, len(b))
    return ContextWatching(_unpack_u64(b)[0], _unpack_u64(b, 8)[0], _unpack_u32(b, 16)[0])


def _rkeys(b: memoryview, o: int) -> tuple[bytes, bytes, int]:
    e = o + 2 * KEY_BYTES
    if e > len(b):
        raise _Truncated
    return b[o : o + KEY_BYTES].tobytes(), b[o + KEY_BYTES : e].tobytes(), e


def _rsized(b: memoryview, o: int, frame_type: int, field_name: str, size: int) -> tuple[bytes, int]:
    """A ``bytes`` field that is empty or exactly ``size`` bytes."""
    value, o = _rblob(b, o)
    if len(value) not in (0, size):
        raise FrameError(f"{_NAMES[frame_type]}: {field_name} is {len(value)} bytes, not 0 or {size}")
    return value, o


def _d_key_publish(b: memoryview) -> KeyPublish:
    (ref,) = _unpack_u64(b)
    box_key, sign_key, o = _rkeys(b, 8)
    rotation, o = _rsized(b, o, KEY_PUBLISH, "rotation", SIGNATURE_BYTES)
    _done(b, o, KEY_PUBLISH)
    return KeyPublish(ref, box_key, sign_key, rotation)


def _d_key_fetch(b: memoryview) -> KeyFetch:
    return KeyFetch(*_rref_str(b, KEY_FETCH))


def _d_key(b: memoryview) -> Key:
    (ref,) = _unpack_u64(b)
    agent_id, o = _rstr(b, 8)
    box_key, sign_key, o = _rkeys(b, o)
    rotation, o = _rsized(b, o, KEY, "rotation", SIGNATURE_BYTES)
    previous_sign_key, o = _rsized(b, o, KEY, "previous_sign_key", KEY_BYTES)
    (revoked,) = _unpack_u8(b, o)
    if revoked > 1:
        raise FrameError(f"KEY: the bool revoked is {revoked}, not 0 or 1")
    (published_ms,) = _unpack_u64(b, o + 1)
    _done(b, o + 9, KEY)
    return Key(ref, agent_id, box_key, sign_key, rotation, previous_sign_key, revoked == 1, published_ms)


_DECODERS: dict[int, Callable[[memoryview], Frame]] = {
    HELLO: _d_hello,
    WELCOME: _d_welcome,
    ERROR: _d_error,
    GOAWAY: _d_goaway,
    OK: _d_ok,
    LOGIN: _d_login,
    REFRESH: _d_refresh,
    TOKENS: _d_tokens,
    LOGOUT: Logout._decode,
    CREDIT: _d_credit,
    PING: Ping._decode,
    PONG: Pong._decode,
    CONFIRM: Confirm._decode,
    REGISTER: _d_register,
    UNREGISTER: Unregister._decode,
    DISCOVER: _d_discover,
    DISCOVERED: _d_discovered,
    HEARTBEAT: _d_heartbeat,
    SEND: Send._decode,
    BROADCAST: Broadcast._decode,
    PUBLISH: Publish._decode,
    SUBSCRIBE: Subscribe._decode,
    UNSUBSCRIBE: Unsubscribe._decode,
    DELIVER: _d_deliver,
    ACK: Ack._decode,
    NACK: Nack._decode,
    REQUEST: Request._decode,
    REPLY: _d_reply,
    RESPONSE: _d_response,
    STREAM_OPEN: _d_stream_open,
    STREAM_CHUNK: _d_stream_chunk,
    STREAM_END: StreamEnd._decode,
    STREAM_RESUME: StreamResume._decode,
    STREAM_STATUS: _d_stream_status,
    STREAM_ABORT: _d_stream_abort,
    CONTEXT_WRITE: _d_context_write,
    CONTEXT_GET: _d_context_get,
    CONTEXT_LIST: _d_context_list,
    CONTEXT_HISTORY: ContextHistory._decode,
    CONTEXT_WATCH: _d_context_watch,
    CONTEXT_UNWATCH: _d_context_unwatch,
    CONTEXT_LINEAGE: ContextLineage._decode,
    CONTEXT: _d_context,
    CONTEXT_PAGE: _d_context_page,
    CONTEXT_EVENT: _d_context_event,
    CONTEXT_WATCHING: _d_context_watching,
    KEY_PUBLISH: _d_key_publish,
    KEY_FETCH: _d_key_fetch,
    KEY: _d_key,
}


def _unknown_type(frame_type: int) -> Callable[[memoryview], Frame]:
    def refuse(body: memoryview) -> Frame:
        raise FrameError(f"unknown frame type 0x{frame_type:02x}")

    return refuse


# Indexed by type byte: a list index is cheaper than a dict lookup and a None check.
_DECODER_TABLE: list[Callable[[memoryview], Frame]] = [
    _DECODERS.get(frame_type) or _unknown_type(frame_type) for frame_type in range(256)
]


def decode(frame_type: int, body: memoryview | bytes | bytearray) -> Frame:
    """The frame of type ``frame_type`` whose body is ``body`` (the bytes after the type byte; a memoryview
    of the read buffer is fastest).

    Raises FrameError (code 1, bad_frame) for an unknown type byte and for a body that breaks a rule of
    section 2.1. Bytes fields are copied out of ``body``, so its buffer may be reused afterwards.
    """
    if body.__class__ is not memoryview:
        body = memoryview(body)
    try:
        return _DECODER_TABLE[frame_type](body)
    except struct.error:
        raise FrameError(f"{_NAMES[frame_type]}: the body ends inside a field") from None
    except UnicodeDecodeError:
        raise FrameError(f"{_NAMES[frame_type]}: a str is not valid UTF-8") from None
    except _ListTooLong as error:
        message = f"{_NAMES[frame_type]}: a list count of {error.args[0]} is over {MAX_LIST}"
        raise FrameError(message) from None
    except IndexError:
        raise FrameError(f"unknown frame type {frame_type}") from None
