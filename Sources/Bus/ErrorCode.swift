/// The stable error codes shared by the wire protocol, the admin API and the audit stream.
///
/// The raw value travels on the wire as a big-endian `u16` and never changes meaning;
/// new codes are only ever appended. `docs/protocol.md` lists them in one table.
public enum ErrorCode: UInt16, Sendable, CaseIterable {
    /// The frame could not be decoded, or arrived when it was not allowed.
    case badFrame = 1
    /// The HELLO named a protocol version this server does not speak.
    case unsupportedVersion = 2
    /// The bearer token is missing, malformed, forged or expired.
    case unauthenticated = 3
    /// The caller's roles do not allow the operation.
    case forbidden = 4
    /// No agent with that id exists in the caller's tenant.
    case unknownAgent = 5
    /// The agent is registered but not connected.
    case offline = 6
    /// A frame or payload exceeded a limit announced in WELCOME.
    case tooLarge = 7
    /// A bounded queue is full; retry after the hint.
    case overloaded = 8
    /// A request's deadline passed before a reply arrived.
    case timeout = 9
    /// The message's deadline had already passed when the bus would have delivered it.
    case deadlineExceeded = 10
    /// No ready agent of the tenant offers the capability.
    case noCapableAgent = 11
    /// A streamed payload did not match its announced SHA-256 checksum or size.
    case checksumMismatch = 12
    /// The stream id is not known to the server (never opened, finished or expired).
    case unknownStream = 13
    /// An earlier request with the same idempotency key is still running.
    case conflict = 14
    /// A field was well-formed but not valid (an id, a topic, a size).
    case invalidArgument = 15
    /// The receiver did not drain its deliveries in time and was disconnected.
    case slowConsumer = 16
    /// The server is shutting down.
    case shuttingDown = 17
    /// Another connection of the same agent took over this session.
    case replaced = 18
    /// The agent missed its heartbeats.
    case heartbeatTimeout = 19
    /// The responder disconnected before replying.
    case unavailable = 20
    /// A server fault; the message says what.
    case `internal` = 21
    /// The receiver refused (NACKed) the delivery on every attempt.
    case rejected = 22
    /// Durable storage cannot take the message now: its queue is full, or the database is
    /// unreachable and the local spool that stands in for it is full, or the audit journal is
    /// full (the message's audit event would be lost). Retry after the hint.
    case storageUnavailable = 23
    /// The agent sent commands faster than its rate limit; retry after the hint.
    case rateLimited = 24
    /// The admin API has nothing at that path or with that id (a stored message, a dead letter).
    case notFound = 25
    /// The admin API's path exists, but not for that HTTP method.
    case methodNotAllowed = 26

    /// The code's stable name, as used in JSON bodies and the audit stream.
    public var name: String {
        switch self {
        case .badFrame: "bad_frame"
        case .unsupportedVersion: "unsupported_version"
        case .unauthenticated: "unauthenticated"
        case .forbidden: "forbidden"
        case .unknownAgent: "unknown_agent"
        case .offline: "offline"
        case .tooLarge: "too_large"
        case .overloaded: "overloaded"
        case .timeout: "timeout"
        case .deadlineExceeded: "deadline_exceeded"
        case .noCapableAgent: "no_capable_agent"
        case .checksumMismatch: "checksum_mismatch"
        case .unknownStream: "unknown_stream"
        case .conflict: "conflict"
        case .invalidArgument: "invalid_argument"
        case .slowConsumer: "slow_consumer"
        case .shuttingDown: "shutting_down"
        case .replaced: "replaced"
        case .heartbeatTimeout: "heartbeat_timeout"
        case .unavailable: "unavailable"
        case .internal: "internal"
        case .rejected: "rejected"
        case .storageUnavailable: "storage_unavailable"
        case .rateLimited: "rate_limited"
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        }
    }
}
