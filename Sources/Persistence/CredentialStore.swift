public import Bus

/// Agent credentials in PostgreSQL (`agent_credentials`): the Argon2id hash of each agent's secret
/// and the roles its tokens carry. Calls block in libpq: make them from a thread pool, never from
/// an event loop.
public final class CredentialStore: Sendable {
    /// What LOGIN checks a secret against.
    public struct Credential: Sendable, Equatable {
        public var secretHash: String
        public var roles: [String]

        public init(secretHash: String, roles: [String]) {
            self.secretHash = secretHash
            self.roles = roles
        }
    }

    private let pool: PostgresPool

    public init(url: String) {
        pool = PostgresPool(url: url, maxIdle: 4)
    }

    /// Connections kept open between calls.
    public var idleConnections: Int { pool.idleCount }

    /// The credential of `agent`, nil when it has none.
    /// - Throws: ``SidecarError`` when PostgreSQL cannot be reached.
    public func credential(of agent: AgentKey) throws(SidecarError) -> Credential? {
        let rows = try pool.withConnection { connection throws(SidecarError) in
            try connection.query(
                "SELECT secret_hash, array_to_string(roles, ',') FROM agent_credentials WHERE tenant_id = $1 AND agent_id = $2",
                [.text(agent.tenant), .text(agent.agentID)])
        }
        guard rows.count == 1 else { return nil }
        return Credential(
            secretHash: rows.string(0, 0), roles: rows.string(0, 1).split(separator: ",").map(String.init))
    }

    /// Creates or replaces the credential of `agent`.
    public func save(_ credential: Credential, for agent: AgentKey) throws(SidecarError) {
        _ = try pool.withConnection { connection throws(SidecarError) in
            try connection.query(
                """
                INSERT INTO agent_credentials (tenant_id, agent_id, secret_hash, roles)
                VALUES ($1, $2, $3, string_to_array($4, ','))
                ON CONFLICT (tenant_id, agent_id)
                DO UPDATE SET secret_hash = excluded.secret_hash, roles = excluded.roles, updated_at = now()
                """,
                [
                    .text(agent.tenant), .text(agent.agentID), .text(credential.secretHash),
                    .text(credential.roles.joined(separator: ",")),
                ])
        }
    }
}
