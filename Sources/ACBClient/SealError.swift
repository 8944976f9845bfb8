/// Why end-to-end encryption refused something. What it refuses is never handed to the
/// application. The codes are stable (docs/protocol.md 5.16 lists them).
public struct SealError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The client has no keys (``ClientConfiguration/keys``), or a key file is unusable.
        case invalidKeys = "invalid_keys"
        /// Sealing needs one agent by id (not a capability).
        case needsAgent = "needs_agent"
        /// The agent's keys differ from the ones pinned for it, and the pinned signing key did not
        /// sign the new ones: compare fingerprints out of band, then ``ACBClient/trustKeys(of:fingerprint:)``.
        case keyChanged = "key_changed"
        /// An operator revoked the agent's keys.
        case keyRevoked = "key_revoked"
        /// Sealed to other keys than this agent's (another agent's, or its keys before a rotation).
        case wrongKey = "wrong_key"
        /// Not written by the agent the bus says sent it.
        case wrongSender = "wrong_sender"
        /// Authentication failed: a byte was changed, or a stream's chunk was replayed, reordered
        /// or dropped.
        case tampered
        /// A sealed stream ended before its last chunk.
        case truncated
        /// A plaintext payload arrived while ``ClientConfiguration/requireSealed`` is on.
        case notSealed = "not_sealed"
        /// A group message under a key this agent was never given (or no longer keeps).
        case unknownGroupKey = "unknown_group_key"
        /// Something well-formed that is not a sealed payload of any known kind.
        case malformed
        /// The sender's keys could not be fetched to open it (no connection, the bus's storage
        /// unreachable): the delivery is left unacknowledged and comes again.
        case keysUnavailable = "keys_unavailable"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// Errors are equal when their codes are: messages name keys and agents.
    public static func == (lhs: SealError, rhs: SealError) -> Bool { lhs.code == rhs.code }
}
