"""End-to-end encryption (docs/protocol.md 5.16, docs/security.md): agent keys, the pins of other
agents' keys, and the sealed-box formats this client reads and writes.

A client with ``keys`` (``acb.connect(..., keys=AgentKeys.file("agent.key"))``) publishes their
public halves on every connect, seals with ``send(..., sealed="box")`` or ``"anonymous"`` and
``request(..., sealed=True)``, and opens what is sealed to it before handing it out; a delivery
that does not open is NACKed and reported on ``Client.sealing_failures()``, never handed out. The
same bytes as the Swift client's, so agents in both languages read each other.

This client does messages, requests and replies, group messages (`Client.sealed_group`), sealed
contexts (`Contexts.put_sealed`, `get_sealed`, `update_sealed`), sealed streams
(`Client.upload(..., sealed=True)`, opened on arrival) and key rotation (`Client.rotate_keys`),
as the Swift client does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import IO, Literal

from . import _frames as f
from . import _sodium as sodium

log = logging.getLogger("acb")

Sealing = Literal["box", "anonymous"]
"""How `send` seals: ``"box"`` (the receiver knows who wrote it) or ``"anonymous"`` (it cannot tell)."""

MAGIC = b"\xac\x5e\x01"
KEY_ID_BYTES = 8
ROTATION_LABEL = b"acb.key.rotate.v1"
_FILE_MAGIC = b"ACBK\x01"


class Kind(IntEnum):
    """The byte after the magic: what a sealed payload is."""

    BOX = 1
    ANONYMOUS = 2
    GROUP = 3
    CONTEXT = 4
    STREAM = 5


class Purpose(IntEnum):
    """What a box holds, inside the encryption, so the bus cannot pass one off as another."""

    MESSAGE = 1
    REQUEST = 2
    REPLY = 3
    GROUP_KEY = 4
    STREAM_KEY = 5


class SealError(Exception):
    """A sealing or opening that failed, with the stable code the Swift client uses too:
    ``invalid_keys``, ``needs_agent``, ``key_changed``, ``key_revoked``, ``wrong_key``,
    ``wrong_sender``, ``tampered``, ``truncated``, ``not_sealed``, ``unknown_group_key``,
    ``malformed``, ``keys_unavailable`` (the sender's keys could not be fetched: the delivery is
    left unacknowledged and comes again)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """An agent's public keys: X25519 to seal to it, Ed25519 to check what it signed."""

    box_key: bytes
    sign_key: bytes

    @property
    def fingerprint(self) -> str:
        """What people compare out of band: the first 16 bytes of SHA-256 over the box key then
        the signing key, in lowercase hex, in groups of four joined by ``:``."""
        digest = hashlib.sha256(self.box_key + self.sign_key).hexdigest()[:32]
        return ":".join(digest[i : i + 4] for i in range(0, 32, 4))

    @property
    def rotation_message(self) -> bytes:
        """What a rotation signs with the previous signing key."""
        return ROTATION_LABEL + self.box_key + self.sign_key


class AgentKeys:
    """An agent's key pairs, made and kept by the agent: only `public` ever leaves it."""

    __slots__ = ("_box_secret", "_seeds", "_sign_secret", "public")

    def __init__(self, seeds: bytes) -> None:
        """Keys from their 64 bytes of seed: the X25519 secret, then the Ed25519 seed."""
        if len(seeds) != 2 * sodium.KEY_BYTES:
            raise SealError("invalid_keys", f"keys are {2 * sodium.KEY_BYTES} bytes of seed, not {len(seeds)}")
        self._seeds = bytes(seeds)
        self._box_secret = self._seeds[: sodium.KEY_BYTES]
        sign_public, self._sign_secret = sodium.sign_keys(self._seeds[sodium.KEY_BYTES :])
        self.public = PublicKeys(sodium.box_public_key(self._box_secret), sign_public)

    @classmethod
    def generate(cls) -> AgentKeys:
        """Fresh random keys."""
        return cls(sodium.random(2 * sodium.KEY_BYTES))

    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> AgentKeys:
        """The keys in the file at `path` (the Swift client's format), made and written there with
        mode 0600 if it does not exist; refused (``invalid_keys``) if others may read it."""
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            keys = cls.generate()
            keys.write(path)
            return keys
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SealError("invalid_keys", f"{path} may be read by others (mode {mode & 0o777:o}); chmod 600 it")
        with open(path, "rb") as file:
            data = file.read()
        if len(data) != len(_FILE_MAGIC) + 2 * sodium.KEY_BYTES or not data.startswith(_FILE_MAGIC):
            raise SealError("invalid_keys", f"{path} is not an ACB key file")
        return cls(data[len(_FILE_MAGIC) :])

    def write(self, path: str | os.PathLike[str]) -> None:
        """Writes the keys to a new file at `path`, readable by its owner only."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(_FILE_MAGIC + self._seeds)

    def shared_key(self, peer: bytes) -> bytes:
        """The key shared with `peer`; `invalid_keys` for a weak (low-order) public key, with which
        anyone could compute it."""
        try:
            return sodium.shared_key(peer, self._box_secret)
        except ValueError as error:
            raise SealError("invalid_keys", str(error)) from None

    def sign(self, message: bytes) -> bytes:
        return sodium.sign(message, self._sign_secret)

    def open_anonymous(self, sealed: bytes) -> bytes | None:
        return sodium.seal_open(sealed, self.public.box_key, self._box_secret)


def random_key() -> bytes:
    """A fresh 32-byte key for a group or a context."""
    return sodium.random(sodium.KEY_BYTES)


def key_id(key: bytes) -> bytes:
    return key[:KEY_ID_BYTES]


def kind_of(payload: bytes) -> Kind | None:
    """The kind of a sealed payload, None for anything else."""
    if len(payload) <= len(MAGIC) or not payload.startswith(MAGIC):
        return None
    try:
        return Kind(payload[len(MAGIC)])
    except ValueError:
        return None


@dataclass(slots=True)
class _SharedKeys:
    """The boxes' shared keys by own and peer public key: each costs an X25519 to compute."""

    limit: int = 4096
    keys: dict[bytes, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, peer: bytes, own: AgentKeys) -> bytes:
        pair = own.public.box_key + peer
        with self.lock:
            known = self.keys.get(pair)
        if known is not None:
            return known
        key = own.shared_key(peer)
        with self.lock:
            if len(self.keys) >= self.limit:
                self.keys.clear()
            self.keys[pair] = key
        return key


_shared = _SharedKeys()


def box(
    payload: bytes, purpose: Purpose, recipient: PublicKeys, sender: AgentKeys, binding: bytes = b""
) -> tuple[bytes, bytes]:
    """A box from `sender` to `recipient`: magic, kind, sender and recipient key ids, nonce, box.
    Returns the sealed bytes and the nonce (a reply is bound to a request's)."""
    nonce = sodium.nonce()
    sealed = sodium.box(bytes([purpose]) + binding + payload, nonce, _shared.get(recipient.box_key, sender))
    return (
        MAGIC + bytes([Kind.BOX]) + key_id(sender.public.box_key) + key_id(recipient.box_key) + nonce + sealed,
        nonce,
    )


def box_sender(sealed: bytes) -> bytes:
    """The sender's key id a box names."""
    return sealed[4 : 4 + KEY_ID_BYTES]


def open_box(sealed: bytes, sender: PublicKeys, own: AgentKeys) -> tuple[Purpose, bytes, bytes]:
    """Opens a box `sender` sealed to `own`: its purpose, nonce, and what it holds after the purpose."""
    header = 4 + 2 * KEY_ID_BYTES + sodium.NONCE_BYTES
    if len(sealed) < header:
        raise SealError("malformed", "too short")
    sender_id, recipient_id = sealed[4:12], sealed[12:20]
    nonce = sealed[20:header]
    if recipient_id != key_id(own.public.box_key):
        raise SealError("wrong_key", "sealed to other keys than this agent's")
    if sender_id != key_id(sender.box_key):
        raise SealError("wrong_sender", "not sealed by the sender's keys")
    opened = sodium.box_open(sealed[header:], nonce, _shared.get(sender.box_key, own))
    if not opened or opened[0] not in Purpose._value2member_map_:
        raise SealError("tampered", "the sealed payload does not authenticate")
    return Purpose(opened[0]), nonce, opened[1:]


def anonymous(payload: bytes, purpose: Purpose, recipient: PublicKeys) -> bytes:
    """A `crypto_box_seal` to `recipient`: magic, kind, recipient key id, sealed box."""
    return (
        MAGIC
        + bytes([Kind.ANONYMOUS])
        + key_id(recipient.box_key)
        + sodium.seal(bytes([purpose]) + payload, recipient.box_key)
    )


def open_anonymous(sealed: bytes, own: AgentKeys) -> tuple[Purpose, bytes]:
    if len(sealed) < 4 + KEY_ID_BYTES:
        raise SealError("malformed", "too short")
    if sealed[4:12] != key_id(own.public.box_key):
        raise SealError("wrong_key", "sealed to other keys than this agent's")
    opened = own.open_anonymous(sealed[12:])
    if not opened or opened[0] not in Purpose._value2member_map_:
        raise SealError("tampered", "the sealed payload does not authenticate")
    return Purpose(opened[0]), opened[1:]


class Reader:
    """Reads the fields of a sealed payload after its magic and kind, refusing a short one as
    ``malformed``."""

    def __init__(self, data: bytes, offset: int = 4) -> None:
        self.data = data
        self.offset = offset

    def take(self, count: int) -> bytes:
        if count > len(self.data) - self.offset:
            raise SealError("malformed", "too short")
        self.offset += count
        return self.data[self.offset - count : self.offset]

    def integer(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def string(self) -> str:
        return self.take(self.integer(1)).decode(errors="replace")


def short_string(text: str) -> bytes:
    """A `u8` length and the UTF-8 (at most 255 bytes)."""
    data = text.encode()[:255]
    return bytes([len(data)]) + data


def signed_aead(head: bytes, content: bytes, key: bytes, signer: AgentKeys, data: bytes = b"") -> bytes:
    """`head`, a nonce, the AEAD of `content` (authenticating `data` and `head`), and the signer's
    signature over all of it: group messages and context bodies."""
    nonce = sodium.nonce()
    body = head + nonce + sodium.aead(content, data + head, nonce, key)
    return body + signer.sign(body)


def open_signed_aead(sealed: bytes, head_end: int, key: bytes, sign_key: bytes, data: bytes = b"") -> bytes:
    """Checks the signature by `sign_key` and opens what `signed_aead` made, whose head ends at `head_end`."""
    if len(sealed) < head_end + sodium.NONCE_BYTES + sodium.AEAD_OVERHEAD + sodium.SIGNATURE_BYTES:
        raise SealError("malformed", "too short")
    signed = len(sealed) - sodium.SIGNATURE_BYTES
    if not sodium.verify(sealed[signed:], sealed[:signed], sign_key):
        raise SealError("tampered", "the signature does not verify")
    nonce = sealed[head_end : head_end + sodium.NONCE_BYTES]
    opened = sodium.aead_open(sealed[head_end + sodium.NONCE_BYTES : signed], data + sealed[:head_end], nonce, key)
    if opened is None:
        raise SealError("tampered", "the sealed payload does not authenticate")
    return opened


def group_message(payload: bytes, group: str, epoch: int, key: bytes, signer: AgentKeys) -> bytes:
    """A message sealed with a group's key: group id, epoch, the signer's key id, then `signed_aead`."""
    head = MAGIC + bytes([Kind.GROUP]) + short_string(group) + epoch.to_bytes(4, "big") + key_id(signer.public.sign_key)
    return signed_aead(head, bytes([Purpose.MESSAGE]) + payload, key, signer)


def group_key_content(name: str, epoch: int, key: bytes) -> bytes:
    """What a group-key box holds: the group's name (without the owner), epoch, key."""
    return short_string(name) + epoch.to_bytes(4, "big") + key


def context_body(
    id: str, body: bytes, epoch: int, key: bytes, readers: list[tuple[str, PublicKeys]], signer: AgentKeys
) -> bytes:
    """A sealed context body: epoch, the writer's key id, the key sealed for each reader, then
    `signed_aead` of the body with the context id as associated data."""
    head = MAGIC + bytes([Kind.CONTEXT]) + epoch.to_bytes(4, "big") + key_id(signer.public.sign_key)
    head += len(readers).to_bytes(2, "big")
    for name, keys in readers:
        head += short_string(name) + sodium.seal(key, keys.box_key)
    return signed_aead(head, body, key, signer, data=id.encode())


@dataclass(frozen=True, slots=True)
class ContextHead:
    """The head of a sealed context body: the fields before its nonce."""

    epoch: int
    signer: bytes
    readers: dict[str, bytes]
    end: int


def context_head(sealed: bytes) -> ContextHead:
    if kind_of(sealed) != Kind.CONTEXT:
        raise SealError("malformed", "not a sealed context body")
    reader = Reader(sealed)
    epoch = reader.integer(4)
    signer = reader.take(KEY_ID_BYTES)
    readers = {}
    for _ in range(reader.integer(2)):
        name = reader.string()
        readers[name] = reader.take(sodium.KEY_BYTES + sodium.SEAL_OVERHEAD)
    return ContextHead(epoch, signer, readers, reader.offset)


#: Plaintext bytes per message of a sealed stream.
STREAM_MESSAGE_BYTES = 1 << 20
#: A sealed stream's header: a box (kind 5) of its key, the secretstream header, the message size
#: and the plaintext size.
STREAM_HEADER_BYTES = 4 + 2 * KEY_ID_BYTES + sodium.NONCE_BYTES + sodium.BOX_OVERHEAD + 1 + 32 + 24 + 4 + 8


def _messages(source: bytes | bytearray | memoryview | str | os.PathLike[str], size: int) -> Iterator[bytes]:
    """The first `size` bytes of `source`, a message at a time; `truncated` if it has fewer."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B")[:size]
        for offset in range(0, len(data), STREAM_MESSAGE_BYTES):
            yield bytes(data[offset : offset + STREAM_MESSAGE_BYTES])
        left = size - len(data)
    else:
        with open(source, "rb") as file:
            left = size
            while left and (message := file.read(min(left, STREAM_MESSAGE_BYTES))):
                left -= len(message)
                yield message
    if left:
        raise SealError("truncated", f"the source ended {left} bytes before its size")


def seal_stream(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    size: int,
    recipient: PublicKeys,
    sender: AgentKeys,
    out: IO[bytes],
) -> None:
    """Writes `source` (`size` bytes) sealed for `recipient` to `out`: the header, the plaintext
    in `crypto_secretstream` messages of `STREAM_MESSAGE_BYTES`, then an empty FINAL message. Each
    message's tag authenticates its plaintext in its place: the receiver needs no checksum of its own."""
    key = random_key()
    stream, stream_header = sodium.SecretStream.push(key)
    content = key + stream_header + STREAM_MESSAGE_BYTES.to_bytes(4, "big") + size.to_bytes(8, "big")
    header = bytearray(box(content, Purpose.STREAM_KEY, recipient, sender)[0])
    header[len(MAGIC)] = Kind.STREAM
    out.write(header)
    for message in _messages(source, size):
        out.write(stream.encrypt(message, final=False))
    out.write(stream.encrypt(b"", final=True))


def open_stream_file(path: str, content: bytes) -> tuple[int, bytes]:
    """Opens the sealed stream at `path` in place (the plaintext readable by its owner only), with
    the key and sizes of its header's `content`. Returns the plaintext's size and SHA-256 (computed
    here, for `IncomingStream.sha256`). Raises `SealError`: `tampered` (a message changed, replayed
    or reordered), `truncated` (bytes missing, or more than the header announced), `malformed`."""
    reader = Reader(content, 0)
    key, header = reader.take(32), reader.take(sodium.STREAM_HEADER_BYTES)
    message_bytes, size = reader.integer(4), reader.integer(8)
    stream = sodium.SecretStream.pull(key, header)
    if stream is None or not 0 < message_bytes <= STREAM_MESSAGE_BYTES:
        raise SealError("malformed", "not a sealed stream's header")
    count = -(-size // message_bytes)
    if os.path.getsize(path) != STREAM_HEADER_BYTES + size + (count + 1) * sodium.STREAM_OVERHEAD:
        raise SealError("truncated", "the stream's length is not the one its header announces")
    directory, name = os.path.split(path)
    descriptor, opened_path = tempfile.mkstemp(dir=directory, prefix=name + ".open-")
    try:
        with open(path, "rb") as sealed, os.fdopen(descriptor, "wb") as plain:
            sealed.seek(STREAM_HEADER_BYTES)
            digest = hashlib.sha256()
            for index in range(count + 1):
                length = min(message_bytes, size - index * message_bytes) if index < count else 0
                message = sealed.read(length + sodium.STREAM_OVERHEAD)
                if len(message) != length + sodium.STREAM_OVERHEAD:
                    raise SealError("truncated", f"the stream ends in message {index} of {count + 1}")
                opened = stream.decrypt(message)
                if opened is None or opened[1] != (index == count):
                    raise SealError(
                        "tampered", f"message {index} does not authenticate (changed, replayed or reordered)"
                    )
                digest.update(opened[0])
                plain.write(opened[0])
        os.replace(opened_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(opened_path)
        raise
    return size, digest.digest()


def reply_content(content: bytes, nonce: bytes) -> bytes:
    """What a reply box holds after the nonce of the request it answers."""
    if not content.startswith(nonce):
        raise SealError("malformed", "not the reply to this request")
    return content[len(nonce) :]


class KeyRing:
    """The keys this client pinned for other agents (trust on first use, as SSH pins host keys),
    and when each was last compared with the bus's copy."""

    #: Group keys kept per group: messages sealed just before a rotation still open.
    KEPT_EPOCHS = 4
    #: Groups whose keys are kept: beyond, the group heard of longest ago goes (any agent with keys
    #: can send group keys under new names).
    MAX_GROUPS = 1024

    def __init__(self, pin_file: str | None = None) -> None:
        """`pin_file` keeps the pins between runs (the Swift client's format: JSON, each agent's
        `box_key` and `sign_key` in base64), written whole with mode 0600 on every change."""
        self._pins: dict[str, PublicKeys] = {}
        self._checked: dict[str, float] = {}
        self._pin_file = pin_file
        if pin_file is not None and os.path.exists(pin_file):
            with open(pin_file, encoding="utf-8") as file:
                for agent, keys in json.load(file).items():
                    # As the Swift client does, an entry without both keys, or with keys of another
                    # size, is left out: it pins nothing.
                    box_key, sign_key = (base64.b64decode(keys.get(name, "")) for name in ("box_key", "sign_key"))
                    if len(box_key) == len(sign_key) == sodium.KEY_BYTES:
                        self._pins[agent] = PublicKeys(box_key, sign_key)
        #: Group id (`owner/name`) → epoch → key, the newest `KEPT_EPOCHS` epochs.
        self._groups: dict[str, dict[int, bytes]] = {}

    def keep_group_key(self, group: str, epoch: int, key: bytes) -> None:
        epochs = self._groups.pop(group, {})
        self._groups[group] = epochs  # the newest at the end
        if len(self._groups) > self.MAX_GROUPS:
            del self._groups[next(iter(self._groups))]
        epochs[epoch] = key
        for old in sorted(epochs)[: -self.KEPT_EPOCHS]:
            del epochs[old]

    def group_key(self, group: str, epoch: int) -> bytes | None:
        return self._groups.get(group, {}).get(epoch)

    def newest_group_key(self, group: str) -> tuple[int, bytes] | None:
        epochs = self._groups.get(group)
        if not epochs:
            return None
        epoch = max(epochs)
        return epoch, epochs[epoch]

    def pinned(self, agent: str, max_age: float) -> PublicKeys | None:
        """The keys pinned for `agent`, if compared with the bus's less than `max_age` seconds ago."""
        checked = self._checked.get(agent)
        if checked is None or time.monotonic() - checked >= max_age:
            return None
        return self._pins.get(agent)

    def accept(self, key: f.Key) -> PublicKeys:
        """Takes the bus's KEY: pins keys seen first, accepts new keys the pinned signing key
        signed (a rotation), refuses other changes (``key_changed``) and revoked keys."""
        published = PublicKeys(key.box_key, key.sign_key)
        if sodium.is_weak(key.box_key):
            raise SealError(
                "invalid_keys", f"the box key of {key.agent_id} is weak: anyone could open what is sealed to it"
            )
        if key.revoked:
            raise SealError("key_revoked", f"an operator revoked the keys of {key.agent_id} ({published.fingerprint})")
        self._checked[key.agent_id] = time.monotonic()
        pin = self._pins.get(key.agent_id)
        if pin is not None and pin != published:
            rotated = key.previous_sign_key == pin.sign_key and sodium.verify(
                key.rotation, published.rotation_message, pin.sign_key
            )
            if not rotated:
                raise SealError(
                    "key_changed",
                    f"the keys of {key.agent_id} changed from {pin.fingerprint} to {published.fingerprint}"
                    " without a rotation the pinned keys signed",
                )
        if pin != published:
            self._pins[key.agent_id] = published
            self._save()
        return published

    def pin(self, agent: str, keys: PublicKeys) -> None:
        self._pins[agent] = keys
        self._checked[agent] = time.monotonic()
        self._save()

    def forget(self, agent: str) -> None:
        self._pins.pop(agent, None)
        self._checked.pop(agent, None)
        self._save()

    def _save(self) -> None:
        """Writes the pins to the pin file, if there is one: aside, then renamed over it."""
        if self._pin_file is None:
            return
        pins = {
            agent: {
                "box_key": base64.b64encode(keys.box_key).decode(),
                "sign_key": base64.b64encode(keys.sign_key).decode(),
            }
            for agent, keys in self._pins.items()
        }
        # A pin file that cannot be written costs the pins' persistence, not the message at hand.
        aside = f"{self._pin_file}.{os.getpid()}.new"
        try:
            descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(pins, file)
            os.replace(aside, self._pin_file)
        except OSError as error:
            log.warning("cannot write the pin file %s: %s", self._pin_file, error)
            with contextlib.suppress(OSError):
                os.unlink(aside)

    def known(self, agent: str) -> PublicKeys | None:
        """The keys pinned for `agent`, however long ago they were checked."""
        return self._pins.get(agent)
