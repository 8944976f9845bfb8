public import Bus

/// Why a token was refused: a stable ``Reason`` for the audit stream (`security.auth_failed`,
/// `security.refresh_failed`) and a detail for humans. On the wire and over HTTP every refusal is
/// ``ErrorCode/unauthenticated`` (see ``busError``).
public struct TokenRefusal: Error, Sendable, Equatable {
    /// The stable reason codes, listed in docs/audit.md.
    public enum Reason: String, Sendable, CaseIterable {
        /// Not three base64url parts, or claims that do not decode.
        case malformed
        /// The header's `alg` is not HS256.
        case algorithm
        /// The signature does not verify with the bus's key.
        case signature
        /// A refresh token where an access token goes, or the reverse.
        case wrongKind = "wrong_kind"
        case expired
        case notYetValid = "not_yet_valid"
        case issuer
        case audience
        /// `sub` or `tenant` is not an identifier.
        case claims
        /// Revoked by LOGOUT or a refresh-token reuse.
        case revoked
        /// The client certificate (mTLS) names another agent or tenant.
        case certificate
    }

    public var reason: Reason
    public var detail: String

    public init(_ reason: Reason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    /// The refusal as the wire and the admin API answer it.
    public var busError: BusError { BusError(.unauthenticated, "token refused (\(reason.rawValue)): \(detail)") }
}
