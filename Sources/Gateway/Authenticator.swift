import ACBTLS
import Actors
import Bus
import Foundation
import NIOPosix
import Persistence
import Synchronization

/// Who an agent is: checks HELLO's access token, trades LOGIN's secret and REFRESH's token for new
/// tokens, and revokes on LOGOUT. Every outcome, success or failure, is an audit event.
public final class Authenticator: Sendable {
    public let authority: TokenAuthority
    public let ledger: TokenLedger
    private let credentials: CredentialStore?
    private let supervisor: Supervisor
    /// LOGINs being checked now: each holds 64 MiB for Argon2id on NIO's thread pool, so they are capped.
    private let loginsInProgress = Atomic<Int>(0)
    /// LOGIN attempts per source address, so one host cannot take every slot.
    private let loginBuckets = AddressBuckets(perSecond: loginsPerSecondPerAddress, burst: loginBurstPerAddress)
    /// Most LOGINs checked at once; one more is refused with `overloaded`.
    public static let maxLoginsInProgress = 16
    /// LOGINs one source address may start per second, and at once.
    public static let loginsPerSecondPerAddress = 5.0
    public static let loginBurstPerAddress: UInt32 = 20

    init(authority: TokenAuthority, ledger: TokenLedger, credentials: CredentialStore?, supervisor: Supervisor) {
        self.authority = authority
        self.ledger = ledger
        self.credentials = credentials
        self.supervisor = supervisor
    }

    /// The identity HELLO's access token proves. With a client certificate (mTLS) the token must be
    /// for the agent (and tenant) the certificate names.
    /// - Parameter method: how the token came, for the audit event: `token` (HELLO) or `http` (admin API).
    func hello(_ token: String, certificate: PeerCertificate?, method: String = "token") async throws(BusError)
        -> TokenAuthority.Verified
    {
        do throws(TokenRefusal) {
            let verified = try await authority.verify(token, as: .access)
            if ledger.isRevoked(jti: verified.jti, family: verified.family) {
                throw TokenRefusal(.revoked, "revoked")
            }
            try Self.check(certificate, names: verified.identity.key)
            audit("security.authenticated", verified.identity.key, ["method": method, "jti": verified.jti])
            return verified
        } catch {
            audit("security.auth_failed", nil, ["method": method, "reason": error.reason.rawValue])
            throw error.busError
        }
    }

    /// Checks an agent's secret against its Argon2id hash and opens a refresh family.
    func login(_ login: Login, from address: String, certificate: PeerCertificate?) async throws(BusError) -> Tokens {
        let key = AgentKey(tenant: login.tenant, agentID: login.agentID)
        guard (try? Identifier.validate(login.tenant, field: "tenant")) != nil,
            (try? Identifier.validate(login.agentID, field: "agent_id")) != nil,
            (try? Self.check(certificate, names: key)) != nil
        else { throw loginFailed(login) }
        guard let credentials else {
            throw BusError(.unavailable, "LOGIN needs PostgreSQL, where agent secrets are kept; use a token")
        }
        if let retryAfterMs = loginBuckets.take(for: address) {
            audit("security.rate_limited", nil, ["frame": "login", "address": address])
            throw BusError(.rateLimited, "too many logins from \(address)", retryAfterMs: retryAfterMs)
        }
        guard loginsInProgress.add(1, ordering: .relaxed).newValue <= Self.maxLoginsInProgress else {
            loginsInProgress.subtract(1, ordering: .relaxed)
            throw BusError(.overloaded, "too many logins at once", retryAfterMs: 100)
        }
        defer { loginsInProgress.subtract(1, ordering: .relaxed) }
        let roles: [String]?
        do {
            roles = try await NIOThreadPool.singleton.runIfActive { () throws(SidecarError) -> [String]? in
                let credential = try credentials.credential(of: key)
                // An unknown agent costs the same Argon2id check as a known one: timing tells nothing.
                let matches = SecretHash.verify(login.secret, against: credential?.secretHash ?? SecretHash.decoy)
                return matches ? credential?.roles : nil
            }
        } catch {
            throw BusError(.storageUnavailable, "agent secrets cannot be read now: \(error)", retryAfterMs: 1000)
        }
        guard let roles else { throw loginFailed(login) }
        let family = UUID().uuidString
        let (tokens, refresh) = try await issue(
            Identity(tenant: key.tenant, agentID: key.agentID, roles: roles), family)
        ledger.startFamily(family, refresh: refresh.jti, expiresAt: refresh.expiresAt)
        audit("security.login", key, ["family": family])
        return tokens
    }

    /// Rotates a refresh token: the presented one must be its family's current one; any other
    /// revokes the family (a stolen token replayed, or the real one after the thief used it) and
    /// ends the agent's live session. Roles are read again from the agent's credential.
    func refresh(_ refresh: Refresh, certificate: PeerCertificate?) async throws(BusError) -> Tokens {
        let verified: TokenAuthority.Verified
        do throws(TokenRefusal) {
            verified = try await authority.verify(refresh.refreshToken, as: .refresh)
            try Self.check(certificate, names: verified.identity.key)
        } catch {
            audit("security.refresh_failed", nil, ["reason": error.reason.rawValue])
            throw error.busError
        }
        let key = verified.identity.key
        guard let family = verified.family else { throw BusError(.unauthenticated, "refresh token without a family") }
        var identity = verified.identity
        if let roles = try await currentRoles(of: key) {
            identity.roles = roles
        } else if credentials != nil {
            audit("security.refresh_failed", key, ["family": family, "reason": "no_credential"])
            throw BusError(.unauthenticated, "the agent has no credential any more, log in again")
        }
        let (tokens, next) = try await issue(identity, family)
        switch ledger.rotate(family, from: verified.jti, to: next.jti, expiresAt: next.expiresAt) {
        case .rotated:
            audit("security.refresh", key, ["family": family])
            return tokens
        case .reused:
            audit("security.refresh_reuse", key, ["family": family, "jti": verified.jti])
            supervisor.disconnect(key, GoAway(code: .unauthenticated, message: "refresh token reuse: tokens revoked"))
            throw BusError(.unauthenticated, "refresh token already used: its family is revoked, log in again")
        case .unknown:
            audit("security.refresh_failed", key, ["family": family, "reason": TokenRefusal.Reason.revoked.rawValue])
            throw BusError(.unauthenticated, "refresh token revoked or unknown, log in again")
        }
    }

    /// Revokes the session's access token and its refresh family, for as long as verification
    /// would still accept the token (its expiry plus the leeway).
    func logout(_ token: TokenAuthority.Verified) {
        let settings = authority.settings
        ledger.revoke(
            jti: token.jti, family: token.family, expiresAt: token.expiresAt.addingTimeInterval(settings.leeway),
            familyExpiresAt: Date().addingTimeInterval(settings.refreshTTL + settings.leeway))
        audit("security.logout", token.identity.key, ["jti": token.jti])
    }

    /// Under mTLS the certificate names the agent (CN) and, if it has an OU, its tenant.
    private static func check(_ certificate: PeerCertificate?, names key: AgentKey) throws(TokenRefusal) {
        guard let certificate else { return }
        guard certificate.commonName == key.agentID, certificate.organizationalUnit.map({ $0 == key.tenant }) ?? true
        else {
            throw TokenRefusal(
                .certificate,
                "the client certificate (CN \(certificate.commonName ?? "none"), OU \(certificate.organizationalUnit ?? "none")) is not \(key)"
            )
        }
    }

    /// The roles the agent's credential grants now; nil without PostgreSQL or without a credential.
    private func currentRoles(of key: AgentKey) async throws(BusError) -> [String]? {
        guard let credentials else { return nil }
        do {
            return try await NIOThreadPool.singleton.runIfActive { () throws(SidecarError) in
                try credentials.credential(of: key)?.roles
            }
        } catch {
            throw BusError(.storageUnavailable, "agent credentials cannot be read now: \(error)", retryAfterMs: 1000)
        }
    }

    /// Audits a failed LOGIN and makes its refusal, the same whatever failed. The event goes to no
    /// tenant's topic: the tenant is the caller's claim, and one topic per made-up tenant would let
    /// anyone create topics. The names are cut to the identifier limit, in bytes.
    private func loginFailed(_ login: Login) -> BusError {
        func cut(_ text: String) -> String {
            String(decoding: text.utf8.prefix(Limits.maxIdentifierBytes), as: UTF8.self)
        }
        audit("security.login_failed", nil, ["tenant": cut(login.tenant), "agent": cut(login.agentID)])
        return BusError(.unauthenticated, "unknown agent or wrong secret")
    }

    /// A new access and refresh token of `family`, and the refresh token's id and expiry.
    private func issue(_ identity: Identity, _ family: String) async throws(BusError) -> (
        Tokens, refresh: (jti: String, expiresAt: Date)
    ) {
        let settings = authority.settings
        let now = Date()
        do {
            let refresh = try await authority.issue(identity, kind: .refresh, family: family, now: now)
            let access = try await authority.issue(identity, kind: .access, family: family, now: now)
            let tokens = Tokens(
                accessToken: access.token, refreshToken: refresh.token, accessExpiresInS: UInt32(settings.accessTTL),
                refreshExpiresInS: UInt32(settings.refreshTTL))
            return (tokens, (refresh.jti, now.addingTimeInterval(settings.refreshTTL)))
        } catch {
            throw BusError(.internal, "cannot sign tokens: \(error)")
        }
    }

    private func audit(_ kind: String, _ key: AgentKey?, _ detail: [String: String]) {
        supervisor.record(kind, tenant: key?.tenant ?? "", agentID: key?.agentID ?? "", detail)
    }
}
