"""The libsodium calls end-to-end encryption makes (docs/protocol.md 5.16), through ctypes.

libsodium is the system's shared library (Debian and Ubuntu: ``libsodium23``); it is loaded on the
first use of a sealing feature, so a client that seals nothing does not need it. Every ``open``
returns None when authentication fails: a wrong key, another sender, or a changed byte look the
same to it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading

KEY_BYTES = 32
NONCE_BYTES = 24
BOX_OVERHEAD = 16  # crypto_box_MACBYTES
SEAL_OVERHEAD = KEY_BYTES + BOX_OVERHEAD  # crypto_box_SEALBYTES
SIGNATURE_BYTES = 64
AEAD_OVERHEAD = 16  # crypto_aead_xchacha20poly1305_ietf_ABYTES
SIGN_SECRET_BYTES = 64


class SodiumUnavailableError(RuntimeError):
    """libsodium could not be loaded: install it (``apt-get install libsodium23``) to seal."""


@functools.cache
def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("sodium")
    if name is None:
        raise SodiumUnavailableError("libsodium is not installed (apt-get install libsodium23): sealing needs it")
    library = ctypes.CDLL(name)
    if library.sodium_init() < 0:
        raise SodiumUnavailableError("libsodium failed to initialise")
    library.randombytes_buf.restype = None
    return library


def _buffer(size: int) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(size)


def random(count: int) -> bytes:
    out = _buffer(count)
    _library().randombytes_buf(out, ctypes.c_size_t(count))
    return out.raw


_nonces = threading.Lock()
_pool = bytearray()


def _forked() -> None:
    """A forked child must not hand out the parent's next nonces, nor wait on a lock a thread of
    the parent held."""
    global _nonces
    _nonces = threading.Lock()
    _pool.clear()


os.register_at_fork(after_in_child=_forked)


def nonce() -> bytes:
    """A fresh random nonce, drawn from a 4 KiB pool of random bytes (a nonce must be unique, not
    secret): one library call for 170 nonces."""
    with _nonces:
        if len(_pool) < NONCE_BYTES:
            _pool[:] = random(4096)
        taken = bytes(_pool[:NONCE_BYTES])
        del _pool[:NONCE_BYTES]
        return taken


def box_public_key(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret (``crypto_scalarmult_base``)."""
    out = _buffer(KEY_BYTES)
    _library().crypto_scalarmult_base(out, secret)
    return out.raw


def sign_keys(seed: bytes) -> tuple[bytes, bytes]:
    """The Ed25519 public key and 64-byte secret key of a 32-byte seed."""
    public, secret = _buffer(KEY_BYTES), _buffer(SIGN_SECRET_BYTES)
    _library().crypto_sign_seed_keypair(public, secret, seed)
    return public.raw, secret.raw


def sign(message: bytes, secret: bytes) -> bytes:
    out = _buffer(SIGNATURE_BYTES)
    _library().crypto_sign_detached(out, None, message, ctypes.c_ulonglong(len(message)), secret)
    return out.raw


def verify(signature: bytes, message: bytes, public: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES:
        return False
    status: int = _library().crypto_sign_verify_detached(signature, message, ctypes.c_ulonglong(len(message)), public)
    return status == 0


_PROBE_SCALAR = bytes([0x42] * KEY_BYTES)


def is_weak(box_key: bytes) -> bool:
    """Whether an X25519 public key is of low order: whatever secret meets it, the shared key is
    all zero, which anyone can compute (libsodium's `crypto_scalarmult` refuses it)."""
    out = _buffer(KEY_BYTES)
    return len(box_key) != KEY_BYTES or _library().crypto_scalarmult(out, _PROBE_SCALAR, box_key) != 0


def shared_key(peer: bytes, secret: bytes) -> bytes:
    """``crypto_box_beforenm``: the key one X25519 pair's secret shares with a peer's public key."""
    out = _buffer(KEY_BYTES)
    if _library().crypto_box_beforenm(out, peer, secret) != 0:
        raise ValueError("a weak public key: no key can be shared with it")
    return out.raw


def box(message: bytes, nonce: bytes, shared: bytes) -> bytes:
    """``crypto_box_easy_afternm``: what ``crypto_box_easy`` writes, under a `shared_key`."""
    out = _buffer(len(message) + BOX_OVERHEAD)
    _library().crypto_box_easy_afternm(out, message, ctypes.c_ulonglong(len(message)), nonce, shared)
    return out.raw


def box_open(sealed: bytes, nonce: bytes, shared: bytes) -> bytes | None:
    if len(sealed) < BOX_OVERHEAD:
        return None
    out = _buffer(len(sealed) - BOX_OVERHEAD)
    status = _library().crypto_box_open_easy_afternm(out, sealed, ctypes.c_ulonglong(len(sealed)), nonce, shared)
    return out.raw if status == 0 else None


def aead(message: bytes, data: bytes, nonce: bytes, key: bytes) -> bytes:
    """XChaCha20-Poly1305 (IETF) of `message`, with `data` authenticated too."""
    out = _buffer(len(message) + AEAD_OVERHEAD)
    _library().crypto_aead_xchacha20poly1305_ietf_encrypt(
        out, None, message, ctypes.c_ulonglong(len(message)), data, ctypes.c_ulonglong(len(data)), None, nonce, key
    )
    return out.raw


def aead_open(sealed: bytes, data: bytes, nonce: bytes, key: bytes) -> bytes | None:
    if len(sealed) < AEAD_OVERHEAD:
        return None
    out = _buffer(len(sealed) - AEAD_OVERHEAD)
    status = _library().crypto_aead_xchacha20poly1305_ietf_decrypt(
        out, None, None, sealed, ctypes.c_ulonglong(len(sealed)), data, ctypes.c_ulonglong(len(data)), nonce, key
    )
    return out.raw if status == 0 else None


STREAM_HEADER_BYTES = 24  # crypto_secretstream_xchacha20poly1305_HEADERBYTES
STREAM_OVERHEAD = 17  # crypto_secretstream_xchacha20poly1305_ABYTES
_TAG_MESSAGE, _TAG_FINAL = 0, 3


class SecretStream:
    """A `crypto_secretstream_xchacha20poly1305` state: each message is authenticated and chained
    to the ones before it, and the last carries the FINAL tag."""

    def __init__(self) -> None:
        self._state = _buffer(_library().crypto_secretstream_xchacha20poly1305_statebytes())

    @classmethod
    def push(cls, key: bytes) -> tuple[SecretStream, bytes]:
        """A state to encrypt with, and the header the reader needs."""
        stream, header = cls(), _buffer(STREAM_HEADER_BYTES)
        _library().crypto_secretstream_xchacha20poly1305_init_push(stream._state, header, key)
        return stream, header.raw

    @classmethod
    def pull(cls, key: bytes, header: bytes) -> SecretStream | None:
        stream = cls()
        status = _library().crypto_secretstream_xchacha20poly1305_init_pull(stream._state, header, key)
        return stream if status == 0 else None

    def encrypt(self, message: bytes, final: bool) -> bytes:
        out = _buffer(len(message) + STREAM_OVERHEAD)
        _library().crypto_secretstream_xchacha20poly1305_push(
            self._state,
            out,
            None,
            message,
            ctypes.c_ulonglong(len(message)),
            None,
            ctypes.c_ulonglong(0),
            ctypes.c_ubyte(_TAG_FINAL if final else _TAG_MESSAGE),
        )
        return out.raw

    def decrypt(self, sealed: bytes) -> tuple[bytes, bool] | None:
        """The message and whether it was the final one; None when it does not authenticate."""
        if len(sealed) < STREAM_OVERHEAD:
            return None
        out, tag = _buffer(len(sealed) - STREAM_OVERHEAD), ctypes.c_ubyte(0)
        status = _library().crypto_secretstream_xchacha20poly1305_pull(
            self._state,
            out,
            None,
            ctypes.byref(tag),
            sealed,
            ctypes.c_ulonglong(len(sealed)),
            None,
            ctypes.c_ulonglong(0),
        )
        return (out.raw, tag.value == _TAG_FINAL) if status == 0 else None


def seal(message: bytes, recipient: bytes) -> bytes:
    """``crypto_box_seal``: to `recipient`, from no one it can name."""
    out = _buffer(len(message) + SEAL_OVERHEAD)
    _library().crypto_box_seal(out, message, ctypes.c_ulonglong(len(message)), recipient)
    return out.raw


def seal_open(sealed: bytes, public: bytes, secret: bytes) -> bytes | None:
    if len(sealed) < SEAL_OVERHEAD:
        return None
    out = _buffer(len(sealed) - SEAL_OVERHEAD)
    status = _library().crypto_box_seal_open(out, sealed, ctypes.c_ulonglong(len(sealed)), public, secret)
    return out.raw if status == 0 else None
