public import Bus
public import Foundation
import JWTKit

/// Issues and verifies ACB's JWTs (HS256 with a shared secret, through jwt-kit): access tokens for
/// HELLO and refresh tokens for REFRESH.
///
/// Claims: `sub` (agent id), `tenant`, `roles`, `jti`, `iss`, `aud`, `exp`, `nbf`, `iat`, `typ`
/// (access or refresh) and, for tokens from LOGIN or REFRESH, `fam` (the refresh family).
/// Verification checks first that the header's `alg` is `HS256` (RFC 8725 §3.1: any other value,
/// `none` included, is refused even when the signature would verify), then the signature with the
/// configured key, then `typ`, `exp` and `nbf` with ``Settings/leeway``, `iss` and `aud`, then that
/// the ids are valid identifiers. Each refusal is a ``TokenRefusal`` with a stable reason.
/// Revocation is ``TokenLedger``'s. Tokens carry `aud` as an array and `exp`, `nbf`, `iat` as whole seconds.
public struct TokenAuthority: Sendable {
    /// What tokens say about their issuer and how long they last.
    public struct Settings: Sendable {
        public var issuer = "acb"
        public var audience = "acb"
        /// Lifetime of access tokens: 1 hour.
        public var accessTTL: TimeInterval = 3600
        /// Lifetime of refresh tokens: 7 days.
        public var refreshTTL: TimeInterval = 7 * 86_400
        /// Clock skew tolerated on `exp` and `nbf`.
        public var leeway: TimeInterval = 30

        public init() {}
    }

    /// The two kinds of token, as the `typ` claim spells them.
    public enum Kind: String, Sendable {
        case access
        case refresh
    }

    /// A token that passed verification.
    public struct Verified: Sendable {
        public var identity: Identity
        public var jti: String
        /// The refresh family the token belongs to; nil for tokens made by `acb token issue`.
        public var family: String?
        public var expiresAt: Date
    }

    public let settings: Settings
    private let keys: JWTKeyCollection

    /// Shortest secret accepted: HS256 keys must be at least as long as the hash (32 bytes).
    public static let minimumSecretBytes = 32

    /// - Throws: ``ErrorCode/invalidArgument`` when the secret is shorter than ``minimumSecretBytes``.
    public init(secret: String, settings: Settings = Settings()) async throws(BusError) {
        guard secret.utf8.count >= Self.minimumSecretBytes else {
            throw BusError(.invalidArgument, "token secret must be at least \(Self.minimumSecretBytes) bytes")
        }
        self.settings = settings
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// Checks `token` as a token of `kind`.
    /// - Throws: a ``TokenRefusal`` naming the reason.
    public func verify(_ token: String, as kind: Kind, now: Date = Date()) async throws(TokenRefusal) -> Verified {
        try Self.checkAlgorithm(of: token)
        let claims: AgentClaims
        do {
            claims = try await keys.verify(token, as: AgentClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw TokenRefusal(.signature, "the signature does not verify")
        } catch {
            throw TokenRefusal(.malformed, "the token does not decode as an ACB token")
        }
        guard claims.typ == kind.rawValue else {
            throw TokenRefusal(.wrongKind, "a \(claims.typ) token where a \(kind.rawValue) token goes")
        }
        guard claims.exp.value > now.addingTimeInterval(-settings.leeway) else {
            throw TokenRefusal(.expired, "expired at \(claims.exp.value)")
        }
        guard claims.nbf.value <= now.addingTimeInterval(settings.leeway) else {
            throw TokenRefusal(.notYetValid, "not valid before \(claims.nbf.value)")
        }
        guard claims.iss.value == settings.issuer else {
            throw TokenRefusal(.issuer, "issuer '\(claims.iss.value)' is not '\(settings.issuer)'")
        }
        guard claims.aud.value.contains(settings.audience) else {
            throw TokenRefusal(.audience, "audience \(claims.aud.value) lacks '\(settings.audience)'")
        }
        do throws(BusError) {
            try Identifier.validate(claims.sub.value, field: "token sub")
            try Identifier.validate(claims.tenant, field: "token tenant")
        } catch {
            throw TokenRefusal(.claims, error.message)
        }
        return Verified(
            identity: Identity(tenant: claims.tenant, agentID: claims.sub.value, roles: claims.roles),
            jti: claims.jti.value, family: claims.fam, expiresAt: claims.exp.value)
    }

    /// The JOSE header must name HS256: checked before the signature, so a header that names
    /// another algorithm is refused whatever its signature.
    private static func checkAlgorithm(of token: String) throws(TokenRefusal) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Data(base64URL: parts[0]),
            let fields = try? JSONSerialization.jsonObject(with: header) as? [String: Any]
        else { throw TokenRefusal(.malformed, "not a JWS in compact form") }
        guard let algorithm = fields["alg"] as? String, algorithm == "HS256" else {
            throw TokenRefusal(
                .algorithm, "the header's alg is \(fields["alg"].map { "'\($0)'" } ?? "missing"), not HS256")
        }
    }

    /// Signs a token of `kind` for `identity`, valid for `ttl` seconds (the kind's default when nil).
    /// - Returns: the token and its `jti`.
    public func issue(
        _ identity: Identity, kind: Kind = .access, family: String? = nil, ttl: TimeInterval? = nil,
        now: Date = Date()
    ) async throws -> (token: String, jti: String) {
        let jti = UUID().uuidString
        // NumericDate claims are whole seconds, as conventional JWTs carry them: issued at the second
        // begun, expiring at the second after the lifetime ends (never sooner than asked).
        let lifetime = ttl ?? (kind == .access ? settings.accessTTL : settings.refreshTTL)
        let expiry = Date(timeIntervalSince1970: (now.timeIntervalSince1970 + lifetime).rounded(.up))
        let now = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let token = try await keys.sign(
            AgentClaims(
                sub: SubjectClaim(value: identity.agentID), tenant: identity.tenant, roles: identity.roles,
                jti: IDClaim(value: jti), iss: IssuerClaim(value: settings.issuer),
                aud: AudienceClaim(value: [settings.audience]),
                exp: ExpirationClaim(value: expiry),
                nbf: NotBeforeClaim(value: now), iat: IssuedAtClaim(value: now), typ: kind.rawValue, fam: family))
        return (token, jti)
    }

    /// An access token for `identity` (tests and `acb token issue`).
    public func issue(_ identity: Identity, ttl: TimeInterval) async throws -> String {
        try await issue(identity, kind: .access, ttl: ttl).token
    }
}

/// The claims of an ACB token. jwt-kit checks the signature; ``TokenAuthority`` checks the rest.
struct AgentClaims: JWTPayload {
    var sub: SubjectClaim
    var tenant: String
    var roles: [String]
    var jti: IDClaim
    var iss: IssuerClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim
    var iat: IssuedAtClaim
    var typ: String
    var fam: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {}

    /// `aud` as an array of strings (jwt-kit writes one audience as a string) and the dates as
    /// integers; decoding is jwt-kit's, which accepts either form.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sub, forKey: .sub)
        try container.encode(tenant, forKey: .tenant)
        try container.encode(roles, forKey: .roles)
        try container.encode(jti, forKey: .jti)
        try container.encode(iss, forKey: .iss)
        try container.encode(aud.value, forKey: .aud)
        try container.encode(Int64(exp.value.timeIntervalSince1970), forKey: .exp)
        try container.encode(Int64(nbf.value.timeIntervalSince1970), forKey: .nbf)
        try container.encode(Int64(iat.value.timeIntervalSince1970), forKey: .iat)
        try container.encode(typ, forKey: .typ)
        try container.encodeIfPresent(fam, forKey: .fam)
    }
}

extension Data {
    /// Decodes unpadded base64url (RFC 4648 §5), as JWS parts are written; nil if it is not.
    fileprivate init?(base64URL text: Substring) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        self.init(base64Encoded: base64)
    }
}
