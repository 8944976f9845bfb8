"""The frame codec against docs/protocol.md: the worked examples of section 8 byte for byte, the decoding
rules of section 2.1, the fast encoders, and a round trip of every frame type."""

from __future__ import annotations

import hashlib
import pickle
import re
import struct
from dataclasses import MISSING, fields, replace
from pathlib import Path

import pytest

from acb import _frames as f
from acb import errors

PROTOCOL_MD = Path(__file__).resolve().parent / ".." / ".." / ".." / "docs" / "protocol.md"


# ---------------------------------------------------------------------------------------------------
# The examples of section 8


def _examples() -> list[tuple[str, bytes]]:
    """(heading, frame bytes) of every ```hex block of section 8, in order."""
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    start = text.index("\n## 8. ")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    examples: list[tuple[str, bytes]] = []
    heading = ""
    block: list[str] | None = None
    for line in section.splitlines():
        if block is not None:
            if line.strip() == "```":
                examples.append((heading, bytes.fromhex(" ".join(block))))
                block = None
            else:
                block.append(line.split("#", 1)[0])
        elif line.startswith("### "):
            heading = line[4:].strip()
        elif line.strip() == "```hex":
            block = []
    return examples


EXAMPLES = _examples()
EXAMPLE = dict(EXAMPLES)


def _split(frame: bytes) -> tuple[int, memoryview]:
    length, frame_type = f.HEADER.unpack_from(frame)
    assert length == len(frame) - 4, "the length prefix counts the type byte and the body"
    return frame_type, memoryview(frame)[5:]


def _decode_example(heading: str) -> f.Frame:
    return f.decode(*_split(EXAMPLE[heading]))


def test_section_8_has_every_example() -> None:
    assert len(EXAMPLES) >= 28
    assert len(EXAMPLE) == len(EXAMPLES), "every example has a heading of its own"


@pytest.mark.parametrize(("heading", "frame"), EXAMPLES, ids=[heading for heading, _ in EXAMPLES])
def test_example_decodes_and_encodes_back(heading: str, frame: bytes) -> None:
    frame_type, body = _split(frame)
    decoded = f.decode(frame_type, body)
    assert frame_type == type(decoded).TYPE
    assert decoded.encode() == frame
    # The heading names the frame type, e.g. "8.5 SEND" or "8.14 CONTEXT_WRITE (put)".
    assert heading.split()[1] == f._NAMES[frame_type]


def test_example_values() -> None:
    hello = _decode_example("8.1 HELLO")
    assert hello == f.Hello(version=1, token="eyJ.t.s", client_name="acb-py")
    assert _decode_example("8.24 HELLO (version 2)") == f.Hello(2, "eyJ.t.s", "acb-py")

    welcome = _decode_example("8.2 WELCOME")
    assert welcome == f.Welcome(
        session_id=1,
        tenant="acme",
        agent_id="alice",
        max_frame_bytes=1_114_112,
        max_inline_payload=1_048_576,
        chunk_size=1_048_576,
        max_unacked=1024,
        max_pending_requests=1024,
        heartbeat_interval_ms=5000,
    )
    assert welcome == f.Welcome(1, "acme", "alice"), "the defaults are the limits of section 3.2"

    assert _decode_example("8.3 REGISTER") == f.Register(
        1, f.AgentDescription("summarizer", ["summarize"], "", [("lang", "en")])
    )
    assert _decode_example("8.4 SUBSCRIBE") == f.Subscribe(2, "jobs.*")

    send = _decode_example("8.5 SEND")
    assert isinstance(send, f.Send)
    assert (send.ref, send.target_kind, send.target_name) == (1, f.TargetKind.AGENT, "bob")
    assert (send.idempotency_key, send.deadline_ms, send.payload) == ("msg-1", 0, b"hi bob")

    assert _decode_example("8.6 OK") == f.Ok(1, f.Outcome.DELIVERED, 1)
    deliver = f.Deliver(1, f.DeliveryKind.DIRECT, "alice", "", 0, 0, 1, b"hi bob")
    assert _decode_example("8.7 DELIVER") == deliver
    assert _decode_example("8.8 ACK (cumulative)") == f.Ack(1, True)
    assert _decode_example("8.9 ERROR") == f.Error(
        2, errors.ErrorCode.UNKNOWN_AGENT, 0, "no agent carol in this tenant"
    )
    assert _decode_example("8.10 REPLY") == f.Reply(0x0000000100000001, f.ReplyStatus.OK, b"3 words")
    assert _decode_example("8.11 RESPONSE") == f.Response(3, "bob", 0, b"3 words")

    stream_open = _decode_example("8.12 STREAM_OPEN")
    assert stream_open == f.StreamOpen(4, "s1", 0, "bob", 5, 4, hashlib.sha256(b"hello").digest(), 0)
    assert _decode_example("8.13 STREAM_STATUS") == f.StreamStatus(0, "s1", next_index=1, bytes=4)

    put = _decode_example("8.14 CONTEXT_WRITE (put)")
    assert put == f.ContextWrite(
        ref=5,
        operation=f.ContextOperation.PUT,
        id="plan.q3",
        attributes=f.ContextAttributes(
            kind="plan",
            content_type=f.ContentType.JSON,
            scope=f.ContextScope.SHARED,
            readers=["bob"],
            metadata=[("team", "eu")],
        ),
        body=b'{"status":"draft","step":1}',
    )

    context = _decode_example("8.15 CONTEXT (head)")
    assert isinstance(context, f.Context)
    assert (context.ref, context.status, context.body) == (5, f.ContextStatus.HEAD, b"")
    head = context.head
    assert (head.id, head.owner, head.version, head.revision, head.size) == ("plan.q3", "alice", 1, 7, 27)
    assert head.checksum == hashlib.sha256(b'{"status":"draft","step":1}').digest()
    assert (head.created_ms, head.updated_ms, head.updated_by) == (1764420000000, 1764420000000, "alice")
    assert (head.expires_ms, head.state) == (0, f.ContextState.LIVE)
    assert isinstance(put, f.ContextWrite)
    assert head.attributes == put.attributes

    watch = f.ContextWatch(3, "plan.q3", 1, 1, ["/step"])
    assert _decode_example("8.16 CONTEXT_WATCH (field-level)") == watch
    assert _decode_example("8.17 CONTEXT_WATCHING") == f.ContextWatching(3, 1, 0)
    assert _decode_example("8.18 CONTEXT_WRITE (merge_patch)") == f.ContextWrite(
        6, f.ContextOperation.MERGE_PATCH, "plan.q3", expected_version=1, body=b'{"step":2}'
    )

    event = _decode_example("8.19 CONTEXT_EVENT (patch)")
    assert isinstance(event, f.ContextEvent)
    assert (event.watch, event.event, event.payload_kind) == (
        3,
        f.ContextEventKind.UPDATED,
        f.EventPayload.PATCH,
    )
    assert event.payload == b'[{"op":"replace","path":"/step","value":2}]'
    assert event.head.checksum == hashlib.sha256(b'{"status":"draft","step":2}').digest()
    assert (event.head.version, event.head.revision, event.head.updated_ms) == (2, 9, 1764420060000)

    big_body_sha = hashlib.sha256(bytes(range(256)) * 8192).digest()
    assert _decode_example("8.20 STREAM_OPEN (upload to a context)") == f.StreamOpen(
        7, "b1", f.TargetKind.CONTEXT, "logs.run7", 2_097_152, 1_048_576, big_body_sha
    )
    assert _decode_example("8.21 CONTEXT_WRITE (put, uploaded body)") == f.ContextWrite(
        9, f.ContextOperation.PUT, "logs.run7", body_stream="b1"
    )
    streamed = _decode_example("8.22 CONTEXT (streamed)")
    assert isinstance(streamed, f.Context)
    assert streamed.status == f.ContextStatus.STREAMED
    assert (streamed.head.checksum, streamed.head.size) == (big_body_sha, 2_097_152)
    assert streamed.head.attributes == f.ContextAttributes()
    assert _decode_example("8.23 STREAM_END (end of a context body)") == f.StreamEnd(10, "context/10")
    assert _decode_example("8.25 CREDIT") == f.Credit(1024)
    assert _decode_example("8.26 PING") == f.Ping(7)
    assert _decode_example("8.27 CONFIRM") == f.Confirm(6)
    assert _decode_example("8.28 PONG") == f.Pong(7)


# ---------------------------------------------------------------------------------------------------
# The fast encoders

_Wrap = bytes | bytearray | memoryview


@pytest.mark.parametrize("payload", [b"", b"hi bob", bytes(range(256)) * 5])
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_fast_encoders_match_the_dataclasses(payload: bytes, wrap: type[_Wrap]) -> None:
    data = wrap(payload)
    for frame_type, cls in ((f.SEND, f.Send), (f.REQUEST, f.Request)):
        expected = cls(9, f.TargetKind.CAPABILITY, "summarize", "key-7", 1764420000000, payload).encode()
        assert f.encode_send(frame_type, 9, 1, b"summarize", b"key-7", 1764420000000, data) == expected
        expected = cls(9, 0, "bøb", "", 0, payload).encode()
        assert f.encode_send(frame_type, 9, 0, "bøb".encode(), b"", 0, data) == expected
    assert f.encode_fanout(f.BROADCAST, 3, b"", 5, data) == f.Broadcast(3, "", 5, payload).encode()
    assert f.encode_fanout(f.PUBLISH, 4, b"jobs.eu", 0, data) == f.Publish(4, "jobs.eu", 0, payload).encode()
    assert f.encode_reply(0x100000001, 1, data) == f.Reply(0x100000001, 1, payload).encode()
    assert f.encode_chunk(b"12/s1", 3, data) == f.StreamChunk("12/s1", 3, payload).encode()
    assert f.encode_ack(77, True) == f.Ack(77, True).encode()
    assert f.encode_ack(77, False) == f.Ack(77, False).encode()
    assert f.encode_nack(78) == f.Nack(78).encode()


def test_fast_encoders_match_the_examples() -> None:
    assert f.encode_send(f.SEND, 1, 0, b"bob", b"msg-1", 0, b"hi bob") == EXAMPLE["8.5 SEND"]
    assert f.encode_ack(1, True) == EXAMPLE["8.8 ACK (cumulative)"]
    assert f.encode_reply(0x0000000100000001, 0, b"3 words") == EXAMPLE["8.10 REPLY"]


def test_fast_encoders_decode_back() -> None:
    frame = f.encode_chunk(b"s1", 0, memoryview(b"hell"))
    assert f.decode(*_split(frame)) == f.StreamChunk("s1", 0, b"hell")
    frame = f.encode_fanout(f.PUBLISH, 5, b"jobs.eu", 0, bytearray(b"x" * 300))
    assert f.decode(*_split(frame)) == f.Publish(5, "jobs.eu", 0, b"x" * 300)


# ---------------------------------------------------------------------------------------------------
# Version 3: the flags byte, DELIVER's message_id (examples 8.29 to 8.31)

# PUBLISH `ref` 4, topic "t", no deadline, payload "p", `flags` durable: length 26 = 1 + 25.
PUBLISH_DURABLE = bytes.fromhex("0000001a 22 0000000000000004 0001 74 0000000000000000 00000001 70 01")
#: The examples' message_id.
MESSAGE_ID = 30_712_372_903_542_784


@pytest.mark.parametrize(
    ("frame", "encoded"),
    [
        (
            f.Send(8, f.TargetKind.AGENT, "bob", "", 0, b"hi bob", f.MessageFlags.DURABLE),
            EXAMPLE["8.29 SEND (durable)"],
        ),
        (f.Send(1, f.TargetKind.AGENT, "bob", "msg-1", 0, b"hi bob"), EXAMPLE["8.5 SEND"]),
        (f.Publish(4, "t", 0, b"p", f.MessageFlags.DURABLE), PUBLISH_DURABLE),
        (f.Ok(8, f.Outcome.QUEUED, 1), EXAMPLE["8.30 OK (queued)"]),
        (
            f.Deliver(2, f.DeliveryKind.DIRECT, "alice", "", 0, 0, 1, b"hi bob", MESSAGE_ID),
            EXAMPLE["8.31 DELIVER (version 3)"],
        ),
        (f.Deliver(1, f.DeliveryKind.DIRECT, "alice", "", 0, 0, 1, b"hi bob"), EXAMPLE["8.7 DELIVER"]),
    ],
    ids=["SEND durable", "SEND no flags", "PUBLISH durable", "OK queued", "DELIVER version 3", "DELIVER version 2"],
)
def test_version_3_fields_byte_for_byte(frame: f.Frame, encoded: bytes) -> None:
    assert frame.encode() == encoded
    assert f.decode(*_split(encoded)) == frame


def test_flags_are_written_only_when_set() -> None:
    """A frame without flags is the frame of version 2, from the fast encoders too."""
    assert f.encode_send(f.SEND, 1, 0, b"bob", b"msg-1", 0, b"hi bob", 0) == EXAMPLE["8.5 SEND"]
    durable = f.encode_send(f.SEND, 8, 0, b"bob", b"", 0, b"hi bob", f.MessageFlags.DURABLE)
    assert durable == EXAMPLE["8.29 SEND (durable)"]
    assert f.encode_fanout(f.PUBLISH, 4, b"t", 0, memoryview(b"p"), f.MessageFlags.DURABLE) == PUBLISH_DURABLE
    assert f.encode_fanout(f.PUBLISH, 4, b"t", 0, b"p") == f.Publish(4, "t", 0, b"p").encode()
    assert f.encode_fanout(f.BROADCAST, 4, b"", 0, b"p", 1) == f.Broadcast(4, "", 0, b"p", 1).encode()
    assert f.encode_send(f.REQUEST, 2, 0, b"bob", b"", 9, b"q", 1) == f.Request(2, 0, "bob", "", 9, b"q", 1).encode()
    assert int(f.MessageFlags.DURABLE) == 0x01


def test_an_absent_flags_byte_decodes_as_none_and_a_zero_one_too() -> None:
    frame_type, body = _split(EXAMPLE["8.5 SEND"])
    assert f.decode(frame_type, body) == f.Send(1, 0, "bob", "msg-1", 0, b"hi bob", 0)
    assert f.decode(frame_type, bytes(body) + b"\x00") == f.Send(1, 0, "bob", "msg-1", 0, b"hi bob", 0)
    assert f.decode(frame_type, bytes(body) + b"\x03") == f.Send(1, 0, "bob", "msg-1", 0, b"hi bob", 3)


@pytest.mark.parametrize("extra", [1, 7, 9, 16])
def test_deliver_with_a_tail_other_than_a_message_id_is_refused(extra: int) -> None:
    frame_type, body = _split(EXAMPLE["8.7 DELIVER"])
    with pytest.raises(f.FrameError) as caught:
        f.decode(frame_type, bytes(body) + b"\x00" * extra)
    assert caught.value.code == errors.ErrorCode.BAD_FRAME


def test_deliver_message_id_zero_is_kept_apart_from_absent() -> None:
    """A version 3 bus writes 0 for a message in memory only; version 2 writes nothing."""
    zero = f.Deliver(1, 0, "alice", payload=b"x", message_id=0)
    decoded = f.decode(*_split(zero.encode()))
    assert isinstance(decoded, f.Deliver) and decoded.message_id == 0
    assert len(zero.encode()) == len(f.Deliver(1, 0, "alice", payload=b"x").encode()) + 8


# ---------------------------------------------------------------------------------------------------
# The decoding rules of section 2.1


def _body(frame: bytes) -> bytes:
    return frame[5:]


def _without_optional_field(frame: f.Frame) -> f.Frame | None:
    """`frame` without its optional last field (2.1), if it has one set; None otherwise."""
    if isinstance(frame, f.Deliver) and frame.message_id is not None:
        return replace(frame, message_id=None)
    if isinstance(frame, (f.Send, f.Request, f.Broadcast, f.Publish)) and frame.flags:
        return replace(frame, flags=0)
    if isinstance(frame, f.StreamEnd) and frame.sha256 is not None:
        return replace(frame, sha256=None)
    return None


@pytest.mark.parametrize(("heading", "frame"), EXAMPLES, ids=[heading for heading, _ in EXAMPLES])
def test_rule_body_ends_inside_a_field(heading: str, frame: bytes) -> None:
    frame_type, body = _split(frame)
    shorter = _without_optional_field(f.decode(frame_type, body))
    for cut in range(len(body)):
        if shorter is not None and cut == len(shorter.encode()) - 5:
            # Cut right before the optional last field: the frame without it (2.1).
            assert f.decode(frame_type, body[:cut]) == shorter
            continue
        with pytest.raises(f.FrameError) as caught:
            f.decode(frame_type, body[:cut])
        assert caught.value.code == errors.ErrorCode.BAD_FRAME


#: The size of the optional last field of a frame type: an example without it takes that many bytes
#: more.
_OPTIONAL_TAIL = {f.SEND: 1, f.REQUEST: 1, f.BROADCAST: 1, f.PUBLISH: 1, f.DELIVER: 8, f.STREAM_END: 32}


@pytest.mark.parametrize(("heading", "frame"), EXAMPLES, ids=[heading for heading, _ in EXAMPLES])
def test_rule_bytes_left_after_the_last_field(heading: str, frame: bytes) -> None:
    frame_type, body = _split(frame)
    tail = _OPTIONAL_TAIL.get(frame_type, 0)
    with pytest.raises(f.FrameError, match="left after the last field"):
        f.decode(frame_type, memoryview(bytes(body) + b"\x00" * (tail + 1)))


def _head(state: int = 0, content_type: int = 0, scope: int = 0, updated_by: str = "o") -> f.ContextHead:
    attributes = f.ContextAttributes(content_type=content_type, scope=scope)
    return f.ContextHead("c", "o", attributes, 1, 1, bytes(32), 0, 0, 0, updated_by, 0, state)


_EURO = "€".encode()  # three bytes, replaced below by three that are not UTF-8

UTF8_FRAMES: list[f.Frame] = [
    f.Deliver(1, 0, "al€ce", payload=b"p"),
    f.Deliver(1, 2, "alice", "jobs.€", payload=b"p"),
    f.Error(1, 5, 0, "no agent €"),
    f.Response(3, "b€b", 0, b""),
    f.StreamStatus(0, "s€", 1, 4),
    f.StreamChunk("s€", 0, b"x"),
    f.Hello(1, "t", "client €"),
    f.Subscribe(2, "jobs.€"),
    f.Register(1, f.AgentDescription("t", ["cap"], "", [("lang", "€n")])),
    f.ContextPage(1, [_head(), _head(updated_by="€")]),
    f.ContextWrite(1, 0, "c", attributes=f.ContextAttributes(parents=[("p€", 1)])),
]


@pytest.mark.parametrize("frame", UTF8_FRAMES, ids=lambda frame: type(frame).__name__)
@pytest.mark.parametrize(
    "bad", [b"\xff\xfe\xfd", b"\xed\xa0\x80", b"\xc0\xaf\x41"], ids=["ff", "surrogate", "overlong"]
)
def test_rule_str_not_utf8(frame: f.Frame, bad: bytes) -> None:
    encoded = frame.encode()
    assert encoded.count(_EURO) == 1
    f.decode(*_split(encoded))
    with pytest.raises(f.FrameError, match="UTF-8"):
        f.decode(*_split(encoded.replace(_EURO, bad)))


def test_rule_list_count_over_256() -> None:
    def register(count: int) -> bytes:
        body = struct.pack(">QH", 1, 1) + b"t" + struct.pack(">H", count) + b"\x00\x01c" * count
        return body + b"\x00\x00" + b"\x00\x00"

    decoded = f.decode(f.REGISTER, memoryview(register(256)))
    assert isinstance(decoded, f.Register)
    assert len(decoded.description.capabilities) == 256
    with pytest.raises(f.FrameError, match="list count of 257"):
        f.decode(f.REGISTER, memoryview(register(257)))
    # A huge count is refused before the items are read.
    with pytest.raises(f.FrameError, match="list count of 65535"):
        f.decode(f.CONTEXT_WATCH, memoryview(struct.pack(">QH1sBQH", 3, 1, b"x", 0, 0, 0xFFFF)))


def test_encoder_refuses_a_list_over_256() -> None:
    with pytest.raises(ValueError, match="at most 256"):
        f.ContextWatch(1, "x", paths=["/a"] * 257).encode()
    with pytest.raises(ValueError, match="32 bytes"):
        f.StreamOpen(1, "s", 0, "bob", 1, 1, b"short").encode()


@pytest.mark.parametrize("value", [2, 3, 0xFF])
def test_rule_bool_not_0_or_1(value: int) -> None:
    for frame_type in (f.ACK, f.NACK):
        with pytest.raises(f.FrameError, match="cumulative"):
            f.decode(frame_type, memoryview(struct.pack(">QB", 1, value)))
    write = bytearray(_body(EXAMPLE["8.18 CONTEXT_WRITE (merge_patch)"]))
    has_attributes_at = 8 + 1 + 2 + 7 + 8 + 8
    assert write[has_attributes_at] == 0
    write[has_attributes_at] = value
    with pytest.raises(f.FrameError, match="has_attributes"):
        f.decode(f.CONTEXT_WRITE, memoryview(bytes(write)))


def test_rule_key_sizes() -> None:
    """A rotation is empty or 64 bytes, a previous signing key empty or 32, revoked a bool."""
    key = _decode_example("8.34 KEY")
    assert key == f.Key(10, "alice", bytes(range(32)), bytes(range(32, 64)), published_ms=1764420000000)
    refused: list[tuple[f.Frame, str]] = [
        (f.KeyPublish(1, bytes(32), bytes(32), b"x" * 63), "rotation is 63 bytes"),
        (replace(key, rotation=b"x" * 65), "rotation is 65 bytes"),
        (replace(key, previous_sign_key=b"x" * 31), "previous_sign_key is 31 bytes"),
    ]
    for frame, match in refused:
        with pytest.raises(f.FrameError, match=match):
            f.decode(*_split(frame.encode()))
    revoked = bytearray(EXAMPLE["8.34 KEY"])
    revoked[-9] = 2
    with pytest.raises(f.FrameError, match="revoked"):
        f.decode(*_split(bytes(revoked)))
    with pytest.raises(ValueError, match="32 bytes"):
        f.KeyPublish(1, b"short", bytes(32)).encode()


@pytest.mark.parametrize("frame_type", [0x00, 0x0E, 0x0F, 0x15, 0x28, 0x33, 0x46, 0x57, 0x5C, 0xFF])
def test_rule_unknown_type_byte(frame_type: int) -> None:
    with pytest.raises(f.FrameError, match="unknown frame type") as caught:
        f.decode(frame_type, memoryview(b"\x00" * 8))
    assert caught.value.code == 1


STRICT_ENUMS: list[tuple[str, f.Frame]] = [
    ("target.kind", f.Send(1, 3, "bob")),
    ("target.kind", f.Request(1, 3, "bob")),
    ("target.kind", f.StreamOpen(1, "s", 3, "bob", 1, 1, bytes(32))),
    ("readiness", f.Heartbeat(3)),
    ("status", f.Discover(1, status=3)),
    ("kind", f.Deliver(1, 4, "alice")),
    ("outcome", f.Ok(1, 3)),
    ("status", f.Reply(1, 2)),
    ("status", f.Response(1, "bob", 2)),
    ("operation", f.ContextWrite(1, 7, "c")),
    ("content_type", f.ContextWrite(1, 0, "c", attributes=f.ContextAttributes(content_type=3))),
    ("scope", f.ContextWrite(1, 0, "c", attributes=f.ContextAttributes(scope=4))),
    ("state", f.Context(1, 0, _head(state=3))),
    ("content_type", f.ContextPage(1, [_head(), _head(content_type=3)])),
    ("scope", f.ContextEvent(1, 0, _head(scope=4))),
    ("status", f.Context(1, 4, _head())),
    ("start", f.ContextWatch(1, "c", start=3)),
    ("event", f.ContextEvent(1, 5, _head())),
    ("payload_kind", f.ContextEvent(1, 0, _head(), payload_kind=3)),
]


@pytest.mark.parametrize(
    ("field_name", "frame"), STRICT_ENUMS, ids=[f"{type(fr).__name__}.{n}" for n, fr in STRICT_ENUMS]
)
def test_rule_strict_enum_out_of_range(field_name: str, frame: f.Frame) -> None:
    with pytest.raises(f.FrameError, match=re.escape(field_name)):
        f.decode(*_split(frame.encode()))


def test_tolerated_values() -> None:
    # Content type 2 is `sealed` (5.16): a sealed context's head decodes.
    page = f.decode(*_split(f.ContextPage(1, [_head(content_type=2)]).encode()))
    assert isinstance(page, f.ContextPage) and page.heads[0].attributes.content_type == f.ContentType.SEALED
    # Error codes are only appended: an unknown one decodes, kept as sent.
    assert f.decode(*_split(f.Error(1, 999, 0, "new").encode())) == f.Error(1, 999, 0, "new")
    assert f.decode(*_split(f.GoAway(0xFFFF, "bye").encode())) == f.GoAway(0xFFFF, "bye")
    assert f.decode(*_split(f.StreamAbort("s", 500, "x").encode())) == f.StreamAbort("s", 500, "x")
    # AgentInfo: an unknown status reads as offline, an unknown readiness as busy.
    agent = f.AgentInfo("a", f.AgentDescription(), status=9, readiness=7, in_flight=3)
    decoded = f.decode(*_split(f.Discovered(1, [agent]).encode()))
    assert isinstance(decoded, f.Discovered)
    assert decoded.agents[0] == f.AgentInfo("a", f.AgentDescription(), 2, 1, 3)
    # A target of kind 2 context decodes in SEND (it fails the command, not the frame).
    assert f.decode(*_split(f.Send(1, 2, "c").encode())) == f.Send(1, 2, "c")


def test_decode_takes_bytes_too() -> None:
    frame_type, body = _split(EXAMPLE["8.7 DELIVER"])
    assert f.decode(frame_type, body) == f.decode(frame_type, bytes(body))


def test_decoded_payload_does_not_share_the_buffer() -> None:
    buffer = bytearray(EXAMPLE["8.7 DELIVER"])
    decoded = f.decode(buffer[4], memoryview(buffer)[5:])
    buffer[-6:] = b"xxxxxx"
    assert isinstance(decoded, f.Deliver)
    assert decoded.payload == b"hi bob"


# ---------------------------------------------------------------------------------------------------
# Every frame type round trip


_HEAD = f.ContextHead(
    id="plan.q3",
    owner="alice",
    attributes=f.ContextAttributes(
        kind="plan",
        content_type=1,
        label="1.4.0",
        scope=3,
        readers=["bob", "carol"],
        writers=["dave"],
        metadata=[("team", "eu"), ("tier", "gold")],
        parents=[("spec.q3", 4), ("notes", 2**64 - 1)],
        source="corr-17",
    ),
    version=12,
    revision=99,
    checksum=hashlib.sha256(b"body").digest(),
    size=4,
    created_ms=1764420000000,
    updated_ms=1764420060000,
    updated_by="bob",
    expires_ms=1764430000000,
    state=2,
)
_DESCRIPTION = f.AgentDescription(
    agent_type="summarizer",
    capabilities=["summarize", "translate"],
    location="eu-west, rack 4",
    metadata=[("lang", "en")],
)

ROUND_TRIPS: list[f.Frame] = [
    f.Hello(2, "eyJ.t.s", "acb-py/0.1 ✓"),
    f.Welcome(2**64 - 1, "acme", "alice", 1, 2, 3, 4, 5, 6),
    f.Error(7, 28, 1000, "current version 2: the context changed"),
    f.GoAway(18, "another connection took over"),
    f.Ok(9, 2, 3),
    f.Login("acme", "alice", "s3cr3t"),
    f.Refresh("refresh.token"),
    f.Tokens("access", "refresh", 3600, 604800),
    f.Logout(10),
    f.Credit(256),
    f.Ping(11),
    f.Pong(12),
    f.Confirm(13),
    f.Register(14, _DESCRIPTION),
    f.Unregister(15),
    f.Discover(16, "summarizer", "summarize", 1, "cursor-1", 50),
    f.Discovered(
        17,
        [f.AgentInfo("bob", _DESCRIPTION, 1, 2, 5), f.AgentInfo("eve", f.AgentDescription(), 2, 1, 0)],
        "next",
    ),
    f.Heartbeat(2),
    f.Send(18, 1, "summarize", "key-1", 1764420000000, b"\x00\xffpayload", f.MessageFlags.DURABLE),
    f.Send(18, 1, "summarize", "key-1", 1764420000000, b"\x00\xffpayload"),
    f.Broadcast(19, "not.empty", 1764420000001, b"to all", 0xFF),
    f.Publish(20, "jobs.eu.high", 5, b"job", f.MessageFlags.DURABLE),
    f.Subscribe(21, "jobs.>"),
    f.Unsubscribe(22, "jobs.*"),
    f.Deliver(23, 3, "alice", "jobs.eu", 0x100000001, 1764420000000, 4, b"work", 2**64 - 1),
    f.Deliver(23, 3, "alice", "jobs.eu", 0x100000001, 1764420000000, 4, b"work", 0),
    f.Deliver(23, 3, "alice", "jobs.eu", 0x100000001, 1764420000000, 4, b"work"),
    f.Ack(24, True),
    f.Nack(25, True),
    f.Request(26, 0, "bob", "req-1", 1764420000000, b"question", 2),
    f.Reply(0x100000002, 1, b"failed"),
    f.Response(27, "bob", 1, b"failed"),
    f.StreamOpen(28, "s-uuid", 1, "summarize", 2**40, 1_048_576, hashlib.sha256(b"x").digest(), 99),
    f.StreamChunk("12/s1", 7, b"chunk data"),
    f.StreamEnd(29, "s-uuid"),
    f.StreamEnd(29, "s-uuid", hashlib.sha256(b"x").digest()),
    f.StreamResume(30, "s-uuid"),
    f.StreamStatus(31, "s-uuid", 8, 8_388_608),
    f.StreamAbort("s-uuid", 13, "no such upload"),
    f.ContextWrite(32, 4, "plan.q3", 11, 60_000, _HEAD.attributes, b'[{"op":"add"}]', "b0"),
    f.ContextWrite(33, 2, "logs.run7", 0, 0, None, b"", "b1"),
    f.ContextGet(34, "plan.q3", 3, 2),
    f.ContextList(35, "plan", "alice", "plan.*", "pl", [("team", "eu")], "c2", 10),
    f.ContextHistory(36, "plan.q3", 5, 1),
    f.ContextWatch(37, "plan.>", 2, 1, ["/step", "/a~1b"]),
    f.ContextUnwatch(38, 37),
    f.ContextLineage(39, "plan.q3", 1, 16),
    f.Context(40, 0, _HEAD, b"body"),
    f.ContextPage(41, [_HEAD, _HEAD], "next-page"),
    f.ContextEvent(42, 4, _HEAD, 1, b"body"),
    f.ContextWatching(43, 2**63, 7),
    f.KeyPublish(44, bytes(range(32)), bytes(range(32, 64)), b"\x5a" * 64),
    f.KeyFetch(45, "bob"),
    f.Key(46, "bob", bytes(range(32)), bytes(range(32, 64)), b"\x5a" * 64, b"\x07" * 32, True, 1764420000000),
]


def _all_set(frame: f.Frame) -> bool:
    """Whether no field of ``frame`` holds its default value."""
    for fld in fields(frame):
        if fld.default is not MISSING:
            default = fld.default
        elif fld.default_factory is not MISSING:
            default = fld.default_factory()
        else:
            continue
        if getattr(frame, fld.name) == default:
            return False
    return True


def test_round_trips_cover_every_frame_class() -> None:
    covered = {type(frame) for frame in ROUND_TRIPS if _all_set(frame)}
    assert covered == set(f.FRAME_CLASSES.values()), "one instance of each class sets every field"
    assert len(f.FRAME_CLASSES) == 49
    assert set(f.FRAME_CLASSES) == set(f._DECODERS)


@pytest.mark.parametrize("frame", ROUND_TRIPS, ids=lambda frame: type(frame).__name__)
def test_round_trip(frame: f.Frame) -> None:
    encoded = frame.encode()
    frame_type, body = _split(encoded)
    assert frame_type == type(frame).TYPE
    decoded = f.decode(frame_type, body)
    assert decoded == frame
    assert decoded.encode() == encoded


def test_field_order_and_names_follow_the_protocol() -> None:
    assert [fld.name for fld in fields(f.Send)] == [
        "ref",
        "target_kind",
        "target_name",
        "idempotency_key",
        "deadline_ms",
        "payload",
        "flags",
    ]
    assert [fld.name for fld in fields(f.Publish)] == ["ref", "topic", "deadline_ms", "payload", "flags"]
    assert [fld.name for fld in fields(f.Deliver)][-2:] == ["payload", "message_id"]
    assert [fld.name for fld in fields(f.ContextWrite)] == [
        "ref",
        "operation",
        "id",
        "expected_version",
        "ttl_ms",
        "attributes",
        "body",
        "body_stream",
    ]
    assert f.Send(ref=1, target_kind=0, target_name="bob", payload=b"hi").encode() == f.encode_send(
        f.SEND, 1, 0, b"bob", b"", 0, b"hi"
    )


# ---------------------------------------------------------------------------------------------------
# errors.py


def test_error_codes() -> None:
    assert len(errors.ErrorCode) == 35
    assert (int(errors.ErrorCode.BAD_FRAME), int(errors.ErrorCode.COMPACTED)) == (1, 33)
    assert (int(errors.ErrorCode.NO_KEY), int(errors.ErrorCode.SEALED_BODY)) == (34, 35)
    assert errors.ErrorCode.SEALED_BODY.wire_name == "sealed_body"
    assert errors.ErrorCode.of(6) is errors.ErrorCode.OFFLINE
    assert errors.ErrorCode.of(999) is errors.ErrorCode.INTERNAL
    assert errors.ErrorCode.INVALID_JSON.wire_name == "invalid_json"
    assert errors.ErrorCode.DEADLINE_EXCEEDED.wire_name == "deadline_exceeded"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1, errors.ProtocolError),
        (2, errors.ProtocolError),
        (7, errors.ProtocolError),
        (3, errors.AuthenticationError),
        (4, errors.PermissionDeniedError),
        (5, errors.RoutingError),
        (6, errors.RoutingError),
        (11, errors.RoutingError),
        (20, errors.RoutingError),
        (34, errors.RoutingError),
        (8, errors.RetryableError),
        (14, errors.RetryableError),
        (17, errors.RetryableError),
        (23, errors.RetryableError),
        (24, errors.RetryableError),
        (9, errors.RequestTimeoutError),
        (10, errors.RequestTimeoutError),
        (15, errors.InvalidRequestError),
        (29, errors.InvalidRequestError),
        (30, errors.InvalidRequestError),
        (31, errors.InvalidRequestError),
        (35, errors.InvalidRequestError),
        (21, errors.ServerError),
        (999, errors.ServerError),
        (16, errors.ACBError),
        (27, errors.ContextError),
        (32, errors.ContextError),
        (28, errors.VersionConflictError),
        (33, errors.CompactedError),
        (12, errors.StreamError),
        (13, errors.StreamError),
    ],
)
def test_error_from_picks_the_class(code: int, cls: type[errors.ACBError]) -> None:
    error = errors.error_from(code, "text", retry_after_ms=100, ref=4)
    assert type(error) is cls
    assert (error.code, error.retry_after_ms, error.ref) == (errors.ErrorCode.of(code), 100, 4)


def test_error_details() -> None:
    error = errors.error_from(6, "bob is offline")
    assert str(error) == "offline (6): bob is offline"
    assert str(errors.error_from(6)) == "offline (6)"
    assert str(errors.error_from(999, "new")) == "internal (21): code 999: new"
    assert isinstance(errors.error_from(9), TimeoutError)
    conflict = errors.error_from(28, "current version 12: the context changed")
    assert isinstance(conflict, errors.VersionConflictError)
    assert conflict.current_version == 12
    assert errors.VersionConflictError(28, "something else").current_version is None
    compacted = errors.error_from(33, "oldest 40: only the last 16 versions are kept")
    assert isinstance(compacted, errors.CompactedError)
    assert compacted.oldest == 40
    assert errors.ConnectionClosedError().code is errors.ErrorCode.UNAVAILABLE
    assert errors.SessionEndedError(18, "replaced").code is errors.ErrorCode.REPLACED
    copy = pickle.loads(pickle.dumps(conflict))
    assert type(copy) is errors.VersionConflictError
    assert (copy.code, copy.message, copy.ref) == (conflict.code, conflict.message, conflict.ref)
