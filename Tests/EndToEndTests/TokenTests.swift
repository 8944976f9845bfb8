import Bus
import Crypto
import Foundation
import JWTKit
import NIOCore
import Testing

@testable import Gateway

/// Access and refresh tokens at HELLO and REFRESH: every way a token can be wrong is refused with
/// `unauthenticated` and its reason; refresh rotates, and replaying a rotated token revokes the family.
@Suite(.timeLimit(.minutes(1))) struct TokenTests {
    static let alice = Identity(tenant: "acme", agentID: "alice", roles: ["agent-full"])

    /// Sends HELLO with `token`; the ERROR's message, or nil when WELCOME came.
    static func refusal(_ bus: TestBus, _ token: String) async throws -> String? {
        var raw = try await bus.raw()
        let answer = try await raw.hello(token)
        await raw.close()
        switch answer {
        case .welcome: return nil
        case .error(let error):
            #expect(error.error.code == .unauthenticated, "\(error)")
            return error.error.message
        case let other: throw BusError(.badFrame, "unexpected \(String(describing: other))")
        }
    }

    @Test func everyKindOfBadTokenIsRefusedWithItsReason() async throws {
        // 64 bytes, so that jwt-kit will sign HS512 with it: the same secret, another algorithm.
        let secret = String(repeating: "k", count: 64)
        try await TestBus.with({ $0.tokenSecret = secret }) { bus in
            let authority = bus.server.authority
            let now = Date()
            var otherAudience = TokenAuthority.Settings()
            otherAudience.audience = "somebody-else"
            var otherIssuer = TokenAuthority.Settings()
            otherIssuer.issuer = "mallory"
            let cases: [(String, String)] = [
                ("(expired)", try await authority.issue(Self.alice, ttl: -120)),
                ("(not_yet_valid)", try await authority.issue(Self.alice, now: now.addingTimeInterval(600)).token),
                (
                    "(signature)",
                    try await TokenAuthority(secret: String(repeating: "x", count: 32)).issue(Self.alice, ttl: 60)
                ),
                (
                    "(audience)",
                    try await TokenAuthority(secret: secret, settings: otherAudience).issue(Self.alice, ttl: 60)
                ),
                (
                    "(issuer)",
                    try await TokenAuthority(secret: secret, settings: otherIssuer).issue(Self.alice, ttl: 60)
                ),
                (
                    "(wrong_kind): a refresh token where a access token goes",
                    try await authority.issue(Self.alice, kind: .refresh).token
                ),
                ("(algorithm)", try Self.unsigned(from: try await bus.token("alice"))),
                ("(algorithm)", try await Self.signedWithHS512(by: secret)),
                ("(malformed)", "not-a-token"),
            ]
            for (reason, token) in cases {
                let message = try await Self.refusal(bus, token)
                #expect(message?.contains(reason) == true, "\(reason): \(message ?? "accepted")")
            }
            // Within the leeway (30 s), a token just expired is still good: clocks differ a little.
            #expect(try await Self.refusal(bus, try await authority.issue(Self.alice, ttl: -10)) == nil)
        }
    }

    /// RFC 8725 §3.1: the header's `alg` is checked before the signature, so a header naming
    /// another algorithm is refused even with a valid HS256 signature over it.
    @Test(arguments: [#"{"alg":"none","typ":"JWT"}"#, #"{"alg":"RS256"}"#, #"{"alg":"hs256"}"#, #"{"typ":"JWT"}"#])
    func aHeaderNamingAnotherAlgorithmIsRefusedWhateverItsSignature(header: String) async throws {
        try await TestBus.with { bus in
            let token = Self.resigned(try await bus.token("alice"), header: header, secret: TestBus.secret)
            #expect(try await Self.refusal(bus, token)?.contains("(algorithm)") == true)
            let event = await bus.audit.first { $0.kind == "security.auth_failed" }
            #expect(event.detail["reason"] == "algorithm")
            // The same claims and secret under an HS256 header are good: only the header differs.
            let good = Self.resigned(try await bus.token("alice"), header: #"{"alg":"HS256"}"#, secret: TestBus.secret)
            #expect(try await Self.refusal(bus, good) == nil)
        }
    }

    /// Conventional JWT claims: `aud` an array of strings, the NumericDates whole seconds.
    @Test func issuedTokensCarryAnAudienceArrayAndIntegerDates() async throws {
        let token = try await TokenAuthority(secret: String(repeating: "k", count: 32)).issue(Self.alice, ttl: 60)
        let claims = try #require(
            try JSONSerialization.jsonObject(with: Self.base64URLDecoded(token.split(separator: ".")[1]))
                as? [String: Any])
        #expect(claims["aud"] as? [String] == ["acb"])
        for name in ["exp", "nbf", "iat"] {
            let value = try #require(claims[name] as? NSNumber, "\(name)")
            #expect(value.doubleValue == value.doubleValue.rounded() && !"\(value)".contains("."), "\(name): \(value)")
        }
    }

    @Test func logoutRevokesTheTokenUntilItExpires() async throws {
        try await TestBus.with { bus in
            let token = try await bus.token("alice")
            var raw = try await bus.raw()
            guard case .welcome = try await raw.hello(token) else { Issue.record("expected WELCOME"); return }
            try await raw.send(.logout(RefOnly(ref: 1)))
            #expect(try await raw.read() == .ok(Ok(ref: 1)))
            guard case .goAway(let goAway) = try await raw.read() else { Issue.record("expected GOAWAY"); return }
            #expect(goAway.code == .unauthenticated)
            #expect(try await Self.refusal(bus, token)?.contains("revoked") == true)
            _ = await bus.audit.first { $0.kind == "security.logout" }
        }
    }

    @Test func refreshRotatesAndAReplayRevokesTheFamily() async throws {
        try await TestBus.with { bus in
            let authority = bus.server.authority
            let family = UUID().uuidString
            let first = try await authority.issue(Self.alice, kind: .refresh, family: family)
            bus.server.authenticator.ledger.startFamily(
                family, refresh: first.jti, expiresAt: Date().addingTimeInterval(600))

            let rotated = try await Self.refresh(bus, first.token)
            guard case .tokens(let tokens) = rotated else { Issue.record("expected TOKENS, got \(rotated)"); return }
            #expect(tokens.accessExpiresInS == 3600 && tokens.refreshExpiresInS == 7 * 86_400)
            var live = try await bus.raw()
            guard case .welcome = try await live.hello(tokens.accessToken) else { Issue.record("no WELCOME"); return }

            // The first refresh token again: reuse. The family is revoked, the new tokens with it.
            guard case .error(let reuse) = try await Self.refresh(bus, first.token) else {
                Issue.record("reuse accepted"); return
            }
            #expect(reuse.error.code == .unauthenticated && reuse.error.message.contains("already used"))
            guard case .error = try await Self.refresh(bus, tokens.refreshToken) else {
                Issue.record("family alive"); return
            }
            #expect(try await Self.refusal(bus, tokens.accessToken)?.contains("revoked") == true)
            // The session the family's access token opened is ended too.
            guard case .goAway(let goAway) = try await live.read() else { Issue.record("the session lives on"); return }
            #expect(goAway.code == .unauthenticated)
            let event = await bus.audit.first { $0.kind == "security.refresh_reuse" }
            #expect(event.detail["family"] == family)
        }
    }

    /// Tokens of a growing life, until one is still valid when its HELLO is read (a loaded machine
    /// may take seconds to answer): its session ends when it expires.
    @Test func aSessionEndsWhenItsAccessTokenExpires() async throws {
        try await TestBus.with({ $0.tokens.leeway = 0 }) { bus in
            for ttl: TimeInterval in [1, 4, 16, 64] {
                var raw = try await bus.raw()
                guard case .welcome = try await raw.hello(try await bus.token("alice", ttl: ttl)) else { continue }
                guard case .goAway(let goAway) = try await raw.read() else { Issue.record("expected GOAWAY"); return }
                #expect(goAway.code == .unauthenticated && goAway.message.contains("expired"))
                return
            }
            Issue.record("no token lived until its WELCOME")
        }
    }

    @Test func handshakeFramesInAnOpenSessionAreBadFrames() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            guard case .welcome = try await raw.hello(try await bus.token("alice")) else {
                Issue.record("no WELCOME"); return
            }
            for frame: Frame in [
                .login(Login(tenant: "acme", agentID: "alice", secret: "0123456789abcdef")),
                .refresh(Refresh(refreshToken: "x")), .hello(Hello(token: "x", clientName: "again")),
            ] {
                try await raw.send(frame)
                guard case .error(let error) = try await raw.read() else { Issue.record("expected ERROR"); return }
                #expect(error.error.code == .badFrame, "\(frame.type)")
            }
            // The session goes on.
            try await raw.send(.subscribe(PatternCommand(ref: 1, pattern: "a.b")))
            #expect(try await raw.read() == .ok(Ok(ref: 1)))
        }
    }

    @Test func oneTokenExchangePerConnection() async throws {
        try await TestBus.with { bus in
            let family = UUID().uuidString
            let first = try await bus.server.authority.issue(Self.alice, kind: .refresh, family: family)
            bus.server.authenticator.ledger.startFamily(
                family, refresh: first.jti, expiresAt: Date().addingTimeInterval(600))
            var raw = try await bus.raw()
            try await raw.send(.refresh(Refresh(refreshToken: first.token)))
            guard case .tokens(let tokens) = try await raw.read() else { Issue.record("expected TOKENS"); return }
            try await raw.send(.refresh(Refresh(refreshToken: tokens.refreshToken)))
            guard case .error(let error) = try await raw.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .badFrame)
        }
    }

    @Test func anAccessTokenCannotRefresh() async throws {
        try await TestBus.with { bus in
            guard case .error(let error) = try await Self.refresh(bus, try await bus.token("alice")) else {
                Issue.record("expected ERROR")
                return
            }
            #expect(error.error.message.contains("a access token where a refresh token goes"))
        }
    }

    @Test func loginWithoutPostgreSQLIsUnavailable() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            try await raw.send(.login(Login(tenant: "acme", agentID: "alice", secret: "0123456789abcdef")))
            guard case .error(let error) = try await raw.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .unavailable)
        }
    }

    /// REFRESH on a new connection; the answer.
    static func refresh(_ bus: TestBus, _ token: String) async throws -> Frame? {
        var raw = try await bus.raw()
        try await raw.send(.refresh(Refresh(refreshToken: token)))
        let answer = try await raw.read()
        await raw.close()
        return answer
    }

    /// `token` with its header replaced by `{"alg":"none"}` and no signature.
    static func unsigned(from token: String) throws -> String {
        let parts = token.split(separator: ".")
        let header = base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
        return "\(header).\(parts[1])."
    }

    /// `token`'s claims under `header`, signed with HMAC-SHA256 and `secret` over the new header.
    static func resigned(_ token: String, header: String, secret: String) -> String {
        let signingInput = "\(base64URL(Data(header.utf8))).\(token.split(separator: ".")[1])"
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data(signingInput.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "\(signingInput).\(base64URL(Data(mac)))"
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func base64URLDecoded(_ text: Substring) -> Data {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64) ?? Data()
    }

    /// A token with good claims signed with the right secret but HS512: the key is HS256 only.
    static func signedWithHS512(by secret: String) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha512)
        let now = Date()
        return try await keys.sign(
            AgentClaims(
                sub: SubjectClaim(value: "alice"), tenant: "acme", roles: ["admin"], jti: IDClaim(value: "x"),
                iss: IssuerClaim(value: "acb"), aud: AudienceClaim(value: ["acb"]),
                exp: ExpirationClaim(value: now.addingTimeInterval(60)), nbf: NotBeforeClaim(value: now),
                iat: IssuedAtClaim(value: now), typ: "access", fam: nil))
    }
}
