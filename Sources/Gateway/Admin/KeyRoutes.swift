import Actors
import Bus
import Foundation
import Hummingbird

/// `/api/v1/agents/{agent_id}/keys`: an agent's public keys for end-to-end encryption, and their
/// revocation by an operator.
extension AdminAPI {
    /// Published keys as the API shows them (base64 keys, hex fingerprint).
    struct KeysView: Encodable {
        var agentID: String
        var tenant: String
        var boxKey: String
        var signKey: String
        var fingerprint: String
        /// Whether these keys replaced others with their signature.
        var rotated: Bool
        var revoked: Bool
        /// Unix ms.
        var publishedMs: UInt64

        init(_ published: PublishedKeys, of agent: AgentKey) {
            agentID = agent.agentID
            tenant = agent.tenant
            boxKey = Data(published.keys.boxKey).base64EncodedString()
            signKey = Data(published.keys.signKey).base64EncodedString()
            fingerprint = published.keys.fingerprint
            rotated = !published.rotation.isEmpty
            revoked = published.revoked
            publishedMs = published.publishedMs
        }
    }

    func addKeyRoutes(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/agents/{agent_id}/keys") { request, context in
            let key = try agentKey(request, context, try await caller(request))
            return AdminJSON.response(KeysView(try await publishedKeys(key), of: key))
        }
        routes.on(.post, "/api/v1/agents/{agent_id}/keys/revoke") { request, context in
            let caller = try await caller(request)
            // Not the agent itself: a stolen token must not be able to revoke and republish.
            try caller.requireAdmin()
            let key = try agentKey(request, context, caller)
            let revoked: PublishedKeys?
            do throws(BusError) {
                revoked = try await supervisor.keys.revoke(key)
            } catch {
                throw AdminError(error)
            }
            guard let revoked else { throw AdminError(.noKey, "\(key.agentID) has published no keys") }
            supervisor.record(
                "key.revoked", tenant: key.tenant, agentID: key.agentID,
                ["fingerprint": revoked.keys.fingerprint, "by": "\(caller.key)"])
            return AdminJSON.response(KeysView(revoked, of: key))
        }
    }

    private func publishedKeys(_ key: AgentKey) async throws(AdminError) -> PublishedKeys {
        let published: PublishedKeys?
        do throws(BusError) {
            published = try await supervisor.keys.keys(of: key)
        } catch {
            throw AdminError(error)
        }
        guard let published else { throw AdminError(.noKey, "\(key.agentID) has published no keys") }
        return published
    }
}
