"""Error codes of the ACB wire protocol (docs/protocol.md, section 6) and the exceptions the client raises."""

from __future__ import annotations

import enum
import re
from typing import Any

__all__ = [
    "ACBError",
    "AuthenticationError",
    "CompactedError",
    "ConnectionClosedError",
    "ContextError",
    "ErrorCode",
    "InvalidRequestError",
    "PermissionDeniedError",
    "ProtocolError",
    "RequestTimeoutError",
    "RetryableError",
    "RoutingError",
    "ServerError",
    "SessionEndedError",
    "StreamError",
    "VersionConflictError",
    "error_from",
]


class ErrorCode(enum.IntEnum):
    """The error codes of section 6; they travel as ``u16`` in ERROR, GOAWAY and STREAM_ABORT."""

    BAD_FRAME = 1
    UNSUPPORTED_VERSION = 2
    UNAUTHENTICATED = 3
    FORBIDDEN = 4
    UNKNOWN_AGENT = 5
    OFFLINE = 6
    TOO_LARGE = 7
    OVERLOADED = 8
    TIMEOUT = 9
    DEADLINE_EXCEEDED = 10
    NO_CAPABLE_AGENT = 11
    CHECKSUM_MISMATCH = 12
    UNKNOWN_STREAM = 13
    CONFLICT = 14
    INVALID_ARGUMENT = 15
    SLOW_CONSUMER = 16
    SHUTTING_DOWN = 17
    REPLACED = 18
    HEARTBEAT_TIMEOUT = 19
    UNAVAILABLE = 20
    INTERNAL = 21
    REJECTED = 22
    STORAGE_UNAVAILABLE = 23
    RATE_LIMITED = 24
    NOT_FOUND = 25
    METHOD_NOT_ALLOWED = 26
    UNKNOWN_CONTEXT = 27
    VERSION_CONFLICT = 28
    INVALID_JSON = 29
    PATCH_FAILED = 30
    INVALID_POINTER = 31
    CONTEXT_EXPIRED = 32
    COMPACTED = 33
    NO_KEY = 34
    SEALED_BODY = 35

    @classmethod
    def of(cls, value: int) -> ErrorCode:
        """The member for ``value``; INTERNAL for a code this client does not know (codes get appended)."""
        return cls._value2member_map_.get(value, cls.INTERNAL)  # type: ignore[return-value]

    @property
    def wire_name(self) -> str:
        """The protocol's name of the code, e.g. ``"bad_frame"``."""
        return self.name.lower()


class ACBError(Exception):
    """An error reported by the bus (ERROR, GOAWAY, STREAM_ABORT) or found by the client."""

    code: ErrorCode
    message: str
    retry_after_ms: int
    ref: int

    def __init__(self, code: int, message: str = "", *, retry_after_ms: int = 0, ref: int = 0) -> None:
        super().__init__(code, message)
        self.code = ErrorCode.of(code)
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.ref = ref

    def __str__(self) -> str:
        head = f"{self.code.wire_name} ({int(self.code)})"
        return f"{head}: {self.message}" if self.message else head

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.code.name}, {self.message!r}, "
            f"retry_after_ms={self.retry_after_ms}, ref={self.ref})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), int(self.code), self.message, self.retry_after_ms, self.ref))


def _rebuild(cls: type[ACBError], code: int, message: str, retry_after_ms: int, ref: int) -> ACBError:
    return cls(code, message, retry_after_ms=retry_after_ms, ref=ref)


class ProtocolError(ACBError):
    """The peers disagree on the wire format: bad_frame, unsupported_version, too_large, or a frame the
    client could not decode."""


class AuthenticationError(ACBError):
    """The token or secret was refused (unauthenticated)."""


class PermissionDeniedError(ACBError):
    """The token's roles, or a context's scope, do not allow this (forbidden)."""


class RoutingError(ACBError):
    """The target could not be reached: unknown_agent, offline, no_capable_agent, unavailable."""


class RetryableError(ACBError):
    """Try again later, after ``retry_after_ms`` when it is set: overloaded, rate_limited,
    storage_unavailable, shutting_down, conflict."""


class RequestTimeoutError(ACBError, TimeoutError):
    """A deadline passed: timeout (no reply in time) or deadline_exceeded (past on arrival)."""


class InvalidRequestError(ACBError):
    """The command was well-formed but not acceptable: invalid_argument, invalid_json, invalid_pointer,
    patch_failed."""


class ContextError(ACBError):
    """A context is not there: unknown_context, context_expired (and the subclasses below)."""


_NUMBER_PREFIX = re.compile(r"(\d+)")


def _number_after(message: str, prefix: str) -> int | None:
    if not message.startswith(prefix):
        return None
    match = _NUMBER_PREFIX.match(message, len(prefix))
    return int(match.group(1)) if match else None


class VersionConflictError(ContextError):
    """A CONTEXT_WRITE expected another version, or a create found a live context (version_conflict)."""

    @property
    def current_version(self) -> int | None:
        """N of the message's ``current version N`` prefix (0: no live context); None if absent."""
        return _number_after(self.message, "current version ")


class CompactedError(ContextError):
    """The versions or changes asked for are no longer kept (compacted)."""

    @property
    def oldest(self) -> int | None:
        """N of the message's ``oldest N`` prefix: the oldest position kept; None if absent."""
        return _number_after(self.message, "oldest ")


class StreamError(ACBError):
    """A stream failed: checksum_mismatch, unknown_stream."""


class ServerError(ACBError):
    """The bus's own fault (internal), or a code this client does not know yet."""


class SessionEndedError(ACBError):
    """The server ended the session with GOAWAY; ``code`` is the GOAWAY's."""


class ConnectionClosedError(ACBError):
    """The connection dropped while commands were pending; whether they took effect is unknown."""

    def __init__(
        self, code: int = ErrorCode.UNAVAILABLE, message: str = "", *, retry_after_ms: int = 0, ref: int = 0
    ) -> None:
        super().__init__(code, message, retry_after_ms=retry_after_ms, ref=ref)


_CLASSES: dict[int, type[ACBError]] = {
    ErrorCode.BAD_FRAME: ProtocolError,
    ErrorCode.UNSUPPORTED_VERSION: ProtocolError,
    ErrorCode.TOO_LARGE: ProtocolError,
    ErrorCode.UNAUTHENTICATED: AuthenticationError,
    ErrorCode.FORBIDDEN: PermissionDeniedError,
    ErrorCode.UNKNOWN_AGENT: RoutingError,
    ErrorCode.OFFLINE: RoutingError,
    ErrorCode.NO_CAPABLE_AGENT: RoutingError,
    ErrorCode.UNAVAILABLE: RoutingError,
    ErrorCode.NO_KEY: RoutingError,
    ErrorCode.OVERLOADED: RetryableError,
    ErrorCode.RATE_LIMITED: RetryableError,
    ErrorCode.STORAGE_UNAVAILABLE: RetryableError,
    ErrorCode.SHUTTING_DOWN: RetryableError,
    ErrorCode.CONFLICT: RetryableError,
    ErrorCode.TIMEOUT: RequestTimeoutError,
    ErrorCode.DEADLINE_EXCEEDED: RequestTimeoutError,
    ErrorCode.INVALID_ARGUMENT: InvalidRequestError,
    ErrorCode.INVALID_JSON: InvalidRequestError,
    ErrorCode.INVALID_POINTER: InvalidRequestError,
    ErrorCode.PATCH_FAILED: InvalidRequestError,
    ErrorCode.SEALED_BODY: InvalidRequestError,
    ErrorCode.UNKNOWN_CONTEXT: ContextError,
    ErrorCode.CONTEXT_EXPIRED: ContextError,
    ErrorCode.VERSION_CONFLICT: VersionConflictError,
    ErrorCode.COMPACTED: CompactedError,
    ErrorCode.CHECKSUM_MISMATCH: StreamError,
    ErrorCode.UNKNOWN_STREAM: StreamError,
    ErrorCode.INTERNAL: ServerError,
}


def error_from(code: int, message: str = "", *, retry_after_ms: int = 0, ref: int = 0) -> ACBError:
    """The exception for an ERROR (or STREAM_ABORT) with this code.

    A code this client does not know becomes INTERNAL (a ServerError), with ``code N: `` put in
    front of the message so the number is not lost. Codes the bus sends only in GOAWAY (or never
    on the wire) come as the base class.
    """
    known = ErrorCode.of(code)
    if known is ErrorCode.INTERNAL and code != ErrorCode.INTERNAL:
        message = f"code {code}: {message}" if message else f"code {code}"
    cls = _CLASSES.get(known, ACBError)
    return cls(known, message, retry_after_ms=retry_after_ms, ref=ref)
