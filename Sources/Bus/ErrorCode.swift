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
    /// No context with that id exists in the caller's tenant (or it was deleted), or the caller
    /// may not know of it.
    case unknownContext = 27
    /// A context write expected another version; the message starts `current version N`.
    case versionConflict = 28
    /// A JSON context's body, or a patch, is not valid JSON (or not a valid patch document).
    case invalidJSON = 29
    /// A patch does not apply (a missing path, a failed `test`); the context is unchanged.
    case patchFailed = 30
    /// A JSON Pointer (RFC 6901) does not parse.
    case invalidPointer = 31
    /// The context expired; the id may be created again.
    case contextExpired = 32
    /// A watch asked for changes the bus no longer keeps; the message starts `oldest N`, the
    /// oldest version (or revision) it could resume after.
    case compacted = 33
    /// The agent has published no keys for end-to-end encryption.
    case noKey = 34
    /// The operation reads a sealed (end-to-end encrypted) context's body, which the bus cannot:
    /// a JSON patch, or a watch of fields.
    case sealedBody = 35

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
        case .unknownContext: "unknown_context"
        case .versionConflict: "version_conflict"
        case .invalidJSON: "invalid_json"
        case .patchFailed: "patch_failed"
        case .invalidPointer: "invalid_pointer"
        case .contextExpired: "context_expired"
        case .compacted: "compacted"
        case .noKey: "no_key"
        case .sealedBody: "sealed_body"
        }
    }
}
