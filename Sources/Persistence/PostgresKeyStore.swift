public import Bus

/// Agents' public keys in PostgreSQL (`agent_keys`). Calls block in libpq: make them from a thread
/// of their own, never from an event loop.
public final class PostgresKeyStore: Sendable {
    private let pool: PostgresPool

    public init(url: String) {
        pool = PostgresPool(url: url, maxIdle: 1)
    }

    /// The keys `agent` published, nil when none.
    /// - Throws: ``SidecarError`` when PostgreSQL cannot be reached.
    public func keys(of agent: AgentKey) throws(SidecarError) -> PublishedKeys? {
        let rows = try pool.withConnection { connection throws(SidecarError) in
            try connection.query(
                """
                SELECT box_key, sign_key, rotation, previous_sign_key, revoked::int,
                    (extract(epoch FROM published_at) * 1000)::bigint
                FROM agent_keys WHERE tenant_id = $1 AND agent_id = $2
                """,
                [.text(agent.tenant), .text(agent.agentID)])
        }
        guard rows.count == 1 else { return nil }
        return PublishedKeys(
            keys: PublicKeys(boxKey: rows.bytes(0, 0), signKey: rows.bytes(0, 1)),
            rotation: rows.bytes(0, 2), previousSignKey: rows.bytes(0, 3),
            revoked: rows.integer(0, 4) == 1, publishedMs: UInt64(rows.integer(0, 5)))
    }

    /// Creates or replaces the keys of `agent`.
    public func save(_ keys: PublishedKeys, for agent: AgentKey) throws(SidecarError) {
        _ = try pool.withConnection { connection throws(SidecarError) in
            try connection.query(
                """
                INSERT INTO agent_keys (tenant_id, agent_id, box_key, sign_key, rotation, previous_sign_key, revoked,
                    published_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7::int::boolean, to_timestamp($8::bigint / 1000.0))
                ON CONFLICT (tenant_id, agent_id) DO UPDATE SET box_key = excluded.box_key,
                    sign_key = excluded.sign_key, rotation = excluded.rotation,
                    previous_sign_key = excluded.previous_sign_key, revoked = excluded.revoked,
                    published_at = excluded.published_at
                """,
                [
                    .text(agent.tenant), .text(agent.agentID), .bytes(keys.keys.boxKey), .bytes(keys.keys.signKey),
                    .bytes(keys.rotation), .bytes(keys.previousSignKey), .text(keys.revoked ? "1" : "0"),
                    .text("\(keys.publishedMs)"),
                ])
        }
    }
}
