public import Bus
public import Foundation
import JWTKit

/// Issues and verifies the JWT bearer tokens agents present in HELLO (HS256 with a shared secret).
///
/// Claims: `sub` (agent id), `tenant`, `roles`, `exp`, `iat`. Verification checks the signature
/// with the configured key only (a token naming another algorithm, `none` included, is refused),
/// then expiry, then that the ids are valid identifiers.
public struct TokenAuthority: Sendable {
    private let keys: JWTKeyCollection

    /// Shortest secret accepted: HS256 keys must be at least as long as the hash (32 bytes).
    public static let minimumSecretBytes = 32

    /// - Throws: ``ErrorCode/invalidArgument`` when the secret is shorter than ``minimumSecretBytes``.
    public init(secret: String) async throws(BusError) {
        guard secret.utf8.count >= Self.minimumSecretBytes else {
            throw BusError(.invalidArgument, "token secret must be at least \(Self.minimumSecretBytes) bytes")
        }
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// The identity a token proves.
    /// - Throws: ``ErrorCode/unauthenticated`` with the reason.
    public func verify(_ token: String) async throws(BusError) -> Identity {
        let claims: AgentClaims
        do {
            claims = try await keys.verify(token, as: AgentClaims.self)
        } catch {
            throw BusError(.unauthenticated, "token refused: \(error)")
        }
        do throws(BusError) {
            try Identifier.validate(claims.sub.value, field: "token sub")
            try Identifier.validate(claims.tenant, field: "token tenant")
        } catch {
            throw BusError(.unauthenticated, error.message)
        }
        return Identity(tenant: claims.tenant, agentID: claims.sub.value, roles: claims.roles)
    }

    /// Signs a token for `identity`, valid for `ttl` seconds.
    public func issue(_ identity: Identity, ttl: TimeInterval) async throws -> String {
        let now = Date()
        return try await keys.sign(
            AgentClaims(
                sub: SubjectClaim(value: identity.agentID), tenant: identity.tenant, roles: identity.roles,
                exp: ExpirationClaim(value: now.addingTimeInterval(ttl)), iat: IssuedAtClaim(value: now)))
    }
}

/// The claims of an ACB access token.
struct AgentClaims: JWTPayload {
    var sub: SubjectClaim
    var tenant: String
    var roles: [String]
    var exp: ExpirationClaim
    var iat: IssuedAtClaim

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}
