"""ACB, the Agentic Context Bus: the Python client.

    import acb

    async with acb.connect("127.0.0.1", 7400, token=TOKEN) as client:
        await client.send("bob", "hello")
        async for delivery in client.deliveries():
            print(delivery.sender, delivery.text)

docs/python.md in the ACB repository is the guide; docs/protocol.md the wire protocol.
"""

from ._connection import SendOutcome
from ._frames import (
    AgentDescription,
    AgentInfo,
    AgentStatus,
    ContentType,
    ContextAttributes,
    ContextEventKind,
    ContextHead,
    ContextScope,
    ContextState,
    DeliveryKind,
    Outcome,
    Readiness,
    ReplyStatus,
    TargetKind,
)
from ._sealer import SealedGroup, SealingFailure
from .client import Client, Connecting, connect, request_deadline
from .contexts import ContextEvent, Contexts, SharedContext, Watch
from .delivery import Delivery, Payload, Response
from .errors import (
    ACBError,
    AuthenticationError,
    CompactedError,
    ConnectionClosedError,
    ContextError,
    ErrorCode,
    InvalidRequestError,
    PermissionDeniedError,
    ProtocolError,
    RequestTimeoutError,
    RetryableError,
    RoutingError,
    ServerError,
    SessionEndedError,
    StreamError,
    VersionConflictError,
)
from .sealing import AgentKeys, PublicKeys, SealError, Sealing
from .streams import IncomingStream
from .target import Target, agent, capability

__all__ = [
    "ACBError",
    "AgentDescription",
    "AgentInfo",
    "AgentKeys",
    "AgentStatus",
    "AuthenticationError",
    "Client",
    "CompactedError",
    "Connecting",
    "ConnectionClosedError",
    "ContentType",
    "ContextAttributes",
    "ContextError",
    "ContextEvent",
    "ContextEventKind",
    "ContextHead",
    "ContextScope",
    "ContextState",
    "Contexts",
    "Delivery",
    "DeliveryKind",
    "ErrorCode",
    "IncomingStream",
    "InvalidRequestError",
    "Outcome",
    "Payload",
    "PermissionDeniedError",
    "ProtocolError",
    "PublicKeys",
    "Readiness",
    "ReplyStatus",
    "RequestTimeoutError",
    "Response",
    "RetryableError",
    "RoutingError",
    "SealError",
    "SealedGroup",
    "Sealing",
    "SealingFailure",
    "SendOutcome",
    "ServerError",
    "SessionEndedError",
    "SharedContext",
    "StreamError",
    "Target",
    "TargetKind",
    "VersionConflictError",
    "Watch",
    "agent",
    "capability",
    "connect",
    "request_deadline",
]
