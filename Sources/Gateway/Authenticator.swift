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
    /// Most LOGINs checked at once; one more is refused with `overloaded`.
    public static let maxLoginsInProgress = 16

    init(authority: TokenAuthority, ledger: TokenLedger, credentials: CredentialStore?, supervisor: Supervisor) {
        self.authority = authority
        self.ledger = ledger
        self.credentials = credentials
        self.supervisor = supervisor
    }

    /// The identity HELLO's access token proves. Under mTLS (`certificateName` set) the token must
    /// be for the agent the certificate names.
    func hello(_ token: String, certificateName: String?) async throws(BusError) -> TokenAuthority.Verified {
        do throws(BusError) {
            let verified = try await authority.verify(token, as: .access)
            if ledger.isRevoked(jti: verified.jti, family: verified.family) {
                throw BusError(.unauthenticated, "token refused: revoked")
            }
            if let certificateName, certificateName != verified.identity.agentID {
                throw BusError(
                    .unauthenticated,
                    "the client certificate names '\(certificateName)' but the token is for '\(verified.identity.agentID)'"
                )
            }
            audit("security.authenticated", verified.identity.key, ["method": "token", "jti": verified.jti])
            return verified
        } catch {
            audit("security.auth_failed", nil, ["code": error.code.name, "reason": error.message])
            throw error
        }
    }

    /// Checks an agent's secret against its Argon2id hash and opens a refresh family.
    func login(_ login: Login) async throws(BusError) -> Tokens {
        let key = AgentKey(tenant: login.tenant, agentID: login.agentID)
        do throws(BusError) {
            try Identifier.validate(login.tenant, field: "tenant")
            try Identifier.validate(login.agentID, field: "agent_id")
        } catch {
            throw loginFailed(login)
        }
        guard let credentials else {
            throw BusError(.unavailable, "LOGIN needs PostgreSQL, where agent secrets are kept; use a token")
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
                let matches = SecretHash.verify(login.secret, against: credential?.secretHash ?? Self.decoy)
                return matches ? credential?.roles : nil
            }
        } catch {
            throw BusError(.storageUnavailable, "agent secrets cannot be read now: \(error)", retryAfterMs: 1000)
        }
        guard let roles else { throw loginFailed(login) }
        let identity = Identity(tenant: login.tenant, agentID: login.agentID, roles: roles)
        let family = UUID().uuidString
        let tokens = try await issue(identity, family: family) { refresh, expiresAt in
            ledger.startFamily(family, refresh: refresh, expiresAt: expiresAt)
            return true
        }
        audit("security.login", key, ["family": family])
        return tokens
    }

    /// Rotates a refresh token: the presented one must be its family's current one; any other
    /// revokes the family (a stolen token replayed, or the real one after the thief used it).
    func refresh(_ refresh: Refresh) async throws(BusError) -> Tokens {
        let verified: TokenAuthority.Verified
        do throws(BusError) {
            verified = try await authority.verify(refresh.refreshToken, as: .refresh)
        } catch {
            audit("security.refresh_failed", nil, ["reason": error.message])
            throw error
        }
        let key = verified.identity.key
        guard let family = verified.family else { throw BusError(.unauthenticated, "refresh token without a family") }
        var outcome = TokenLedger.Rotation.unknown
        let tokens = try await issue(verified.identity, family: family) { next, expiresAt in
            outcome = ledger.rotate(family, from: verified.jti, to: next, expiresAt: expiresAt)
            return outcome == .rotated
        }
        switch outcome {
        case .rotated:
            audit("security.refresh", key, ["family": family])
            return tokens
        case .reused:
            audit("security.refresh_reuse", key, ["family": family, "jti": verified.jti])
            throw BusError(.unauthenticated, "refresh token already used: its family is revoked, log in again")
        case .unknown:
            audit("security.refresh_failed", key, ["family": family, "reason": "unknown or revoked family"])
            throw BusError(.unauthenticated, "refresh token revoked or unknown, log in again")
        }
    }

    /// Audits a failed LOGIN and makes its refusal, the same whatever failed. The event goes to no
    /// tenant's topic: the tenant is the caller's claim, and one topic per made-up tenant would let
    /// anyone create topics.
    private func loginFailed(_ login: Login) -> BusError {
        let named = [
            "tenant": String(login.tenant.prefix(Limits.maxIdentifierBytes)),
            "agent": String(login.agentID.prefix(Limits.maxIdentifierBytes)),
        ]
        audit("security.login_failed", nil, named)
        return BusError(.unauthenticated, "unknown agent or wrong secret")
    }

    /// Revokes the session's access token and its refresh family.
    func logout(_ token: TokenAuthority.Verified) {
        ledger.revoke(jti: token.jti, family: token.family, expiresAt: token.expiresAt)
        audit("security.logout", token.identity.key, ["jti": token.jti])
    }

    /// A new refresh and access token pair of `family`; `record` registers the refresh token and
    /// says whether to go on.
    private func issue(
        _ identity: Identity, family: String, record: (String, Date) -> Bool = { _, _ in true }
    ) async throws(BusError) -> Tokens {
        let settings = authority.settings
        do {
            let now = Date()
            let refresh = try await authority.issue(identity, kind: .refresh, family: family, now: now)
            guard record(refresh.jti, now.addingTimeInterval(settings.refreshTTL)) else {
                return Tokens(accessToken: "", refreshToken: "", accessExpiresInS: 0, refreshExpiresInS: 0)
            }
            let access = try await authority.issue(identity, kind: .access, family: family, now: now)
            return Tokens(
                accessToken: access.token, refreshToken: refresh.token, accessExpiresInS: UInt32(settings.accessTTL),
                refreshExpiresInS: UInt32(settings.refreshTTL))
        } catch {
            throw BusError(.internal, "cannot sign tokens: \(error)")
        }
    }

    private func audit(_ kind: String, _ key: AgentKey?, _ detail: [String: String]) {
        supervisor.record(kind, tenant: key?.tenant ?? "", agentID: key?.agentID ?? "", detail)
    }

    /// A hash no secret matches, checked when the agent has no credential.
    private static let decoy: String = (try? SecretHash.hash(SecretHash.generate())) ?? ""
}
