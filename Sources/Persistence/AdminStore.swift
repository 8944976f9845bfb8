import Bus

/// What the admin API reads and changes in PostgreSQL itself: the status of stored messages, dead
/// letters, tenants and their counters.
///
/// Calls block in libpq, so make them from a thread pool. They use one kept connection (a
/// ``PostgresPool``), opened on first use and again after it was lost: operators' calls are few
/// next to the bus's own writes, which keep their own connection.
public final class AdminStore: Sendable {
    /// A message the bus stored: for an offline receiver, or sent through the admin API.
    public struct MessageRecord: Sendable, Encodable, Equatable {
        /// The bus's id, as a decimal string (it exceeds what a JSON number holds exactly).
        public var id: String
        public var tenant: String
        public var to: String
        public var from: String
        public var kind: String
        public var subject: String
        /// `queued`, `delivered` (handed out, not yet acknowledged), `acked` or `dead_lettered`.
        public var status: String
        public var attempts: Int
        /// The reason it was dead-lettered (an error code name), if it was.
        public var lastError: String?
        public var createdAt: String
        public var updatedAt: String
    }

    /// A message the bus gave up on, and why; with its payload (base64) when read alone.
    public struct DeadLetterRecord: Sendable, Encodable, Equatable {
        public var id: String
        public var tenant: String
        /// The stored message it was, if it had been stored.
        public var messageID: String?
        public var to: String
        public var from: String
        /// An error code name: `offline`, `rejected`, `deadline_exceeded`, …
        public var reason: String
        public var attempts: Int
        public var payloadBytes: Int
        /// Only when one dead letter is read: a page of them would hold up to 1 MiB each.
        public var payloadBase64: String?
        public var createdAt: String
    }

    /// A tenant: declared through the admin API (with a name and creation time), or only seen in
    /// agents and credentials.
    public struct TenantRecord: Sendable, Encodable, Equatable {
        public var id: String
        public var name: String
        public var createdAt: String?
    }

    /// What PostgreSQL counts for one tenant.
    public struct TenantCounts: Sendable, Equatable {
        /// Stored messages by status (every status, zero included).
        public var messages: [String: Int]
        public var deadLetters: Int
    }

    /// The statuses a stored message moves through.
    public static let statuses = ["queued", "delivered", "acked", "dead_lettered"]

    /// One connection kept between calls (the API makes them one at a time); an operator's query
    /// never holds it long.
    private let pool: PostgresPool

    public init(url: String) {
        pool = PostgresPool(url: url, maxIdle: 1, setup: "SET statement_timeout = 5000")
    }

    /// The stored message `id`, nil if there is none.
    public func message(_ id: UInt64) throws(SidecarError) -> MessageRecord? {
        let rows = try query(
            """
            SELECT id::text, tenant_id, to_agent, from_agent, kind, subject, status, attempts,
                   coalesce(last_error, ''), \(Self.timestamp("created_at")), \(Self.timestamp("updated_at"))
            FROM messages WHERE id = $1::bigint
            """, [.text("\(id)")])
        guard rows.count == 1 else { return nil }
        let lastError = rows.string(0, 8)
        return MessageRecord(
            id: rows.string(0, 0), tenant: rows.string(0, 1), to: rows.string(0, 2), from: rows.string(0, 3),
            kind: DeliveryKind(rawValue: UInt8(clamping: rows.integer(0, 4))).map { "\($0)" } ?? "unknown",
            subject: rows.string(0, 5), status: rows.string(0, 6), attempts: Int(rows.integer(0, 7)),
            lastError: lastError.isEmpty ? nil : lastError, createdAt: rows.string(0, 9),
            updatedAt: rows.string(0, 10))
    }

    /// One page of the tenant's dead letters after `cursor` (an id; 0 from the start), oldest
    /// first, without payloads; only those of `agent` when given, or only those `ids` when given.
    public func deadLetters(
        tenant: String, agent: String? = nil, ids: [UInt64]? = nil, after cursor: UInt64 = 0, limit: Int
    ) throws(SidecarError) -> [DeadLetterRecord] {
        try deadLetters(
            "octet_length(payload), NULL",
            where: "tenant_id = $1 AND id > $2::bigint AND ($3::text IS NULL OR to_agent = $3)"
                + " AND ($4::bigint[] IS NULL OR id = ANY($4::bigint[])) ORDER BY id LIMIT $5::integer",
            [
                .text(tenant), .text("\(cursor)"), Self.optional(agent), Self.optional(ids.map(Self.array)),
                .text("\(limit)"),
            ])
    }

    /// The dead letter `id` of `tenant` with its payload, nil if there is none.
    public func deadLetter(_ id: UInt64, tenant: String) throws(SidecarError) -> DeadLetterRecord? {
        try deadLetters(
            "octet_length(payload), encode(payload, 'base64')", where: "tenant_id = $1 AND id = $2::bigint",
            [.text(tenant), .text("\(id)")]
        ).first
    }

    /// Turns the dead letter `id` of `tenant` into the stored message `messageID` for the same
    /// receiver, in one statement: a replay that runs twice at once sends it once.
    /// - Returns: the new message's receiver, sender and size; nil if the dead letter is gone.
    public func replay(_ id: UInt64, tenant: String, as messageID: UInt64, expiresAtMs: UInt64) throws(SidecarError)
        -> (to: String, from: String, bytes: Int)?
    {
        let rows = try query(
            """
            WITH gone AS (
                DELETE FROM dead_letters WHERE id = $1::bigint AND tenant_id = $2
                RETURNING to_agent, from_agent, payload)
            INSERT INTO messages (id, tenant_id, to_agent, from_agent, kind, subject, expires_at, payload)
            SELECT $3::bigint, $2, to_agent, from_agent, 0, '', to_timestamp($4::bigint / 1000.0), payload FROM gone
            RETURNING to_agent, from_agent, octet_length(payload)
            """, [.text("\(id)"), .text(tenant), .text("\(messageID)"), .text("\(expiresAtMs)")])
        guard rows.count == 1 else { return nil }
        return (rows.string(0, 0), rows.string(0, 1), Int(rows.integer(0, 2)))
    }

    /// Dead letters matching `condition`, with the columns of `payload` (its size, and its base64
    /// or NULL).
    private func deadLetters(_ payload: String, where condition: String, _ parameters: [PostgresParameter])
        throws(SidecarError) -> [DeadLetterRecord]
    {
        let rows = try query(
            """
            SELECT id::text, tenant_id, coalesce(message_id::text, ''), to_agent, from_agent, reason, attempts,
                   \(Self.timestamp("created_at")), \(payload)
            FROM dead_letters WHERE \(condition)
            """, parameters)
        return (0..<rows.count).map { row in
            let messageID = rows.string(row, 2)
            return DeadLetterRecord(
                id: rows.string(row, 0), tenant: rows.string(row, 1), messageID: messageID.isEmpty ? nil : messageID,
                to: rows.string(row, 3), from: rows.string(row, 4), reason: rows.string(row, 5),
                attempts: Int(rows.integer(row, 6)), payloadBytes: Int(rows.integer(row, 8)),
                payloadBase64: rows.isNull(row, 9) ? nil : rows.string(row, 9).filter { $0 != "\n" },
                createdAt: rows.string(row, 7))
        }
    }

    /// Deletes the tenant's dead letters: those `ids` when given, else those of `agent` when given,
    /// else all of them. - Returns: how many were deleted.
    public func purgeDeadLetters(tenant: String, agent: String? = nil, ids: [UInt64]? = nil) throws(SidecarError)
        -> Int
    {
        let rows = try query(
            """
            WITH gone AS (
                DELETE FROM dead_letters
                WHERE tenant_id = $1 AND ($2::text IS NULL OR to_agent = $2)
                  AND ($3::bigint[] IS NULL OR id = ANY($3::bigint[]))
                RETURNING 1)
            SELECT count(*) FROM gone
            """, [.text(tenant), Self.optional(agent), Self.optional(ids.map(Self.array))])
        return Int(rows.integer(0, 0))
    }

    /// One page of tenants after `cursor` (a tenant id), ordered by id.
    public func tenants(after cursor: String, limit: Int) throws(SidecarError) -> [TenantRecord] {
        let rows = try query(
            """
            SELECT t.tenant_id, coalesce(d.name, ''), coalesce(\(Self.timestamp("d.created_at")), '')
            FROM (SELECT tenant_id FROM tenants UNION SELECT tenant_id FROM agents
                  UNION SELECT tenant_id FROM agent_credentials) t
            LEFT JOIN tenants d USING (tenant_id)
            WHERE t.tenant_id > $1 ORDER BY t.tenant_id LIMIT $2::integer
            """, [.text(cursor), .text("\(limit)")])
        return (0..<rows.count).map { row in
            let created = rows.string(row, 2)
            return TenantRecord(
                id: rows.string(row, 0), name: rows.string(row, 1), createdAt: created.isEmpty ? nil : created)
        }
    }

    /// Declares a tenant. - Returns: it, or nil if it was declared already.
    public func createTenant(_ id: String, name: String) throws(SidecarError) -> TenantRecord? {
        let rows = try query(
            """
            INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING
            RETURNING \(Self.timestamp("created_at"))
            """, [.text(id), .text(name)])
        guard rows.count == 1 else { return nil }
        return TenantRecord(id: id, name: name, createdAt: rows.string(0, 0))
    }

    /// The tenant's stored messages by status, and its dead letters.
    public func counts(of tenant: String) throws(SidecarError) -> TenantCounts {
        let rows = try query(
            """
            SELECT status, count(*) FROM messages WHERE tenant_id = $1 GROUP BY status
            UNION ALL SELECT 'dead_letters', count(*) FROM dead_letters WHERE tenant_id = $1
            """, [.text(tenant)])
        var counts = Dictionary(uniqueKeysWithValues: Self.statuses.map { ($0, 0) })
        for row in 0..<rows.count { counts[rows.string(row, 0)] = Int(rows.integer(row, 1)) }
        let deadLetters = counts.removeValue(forKey: "dead_letters") ?? 0
        return TenantCounts(messages: counts, deadLetters: deadLetters)
    }

    /// Runs `sql` on the kept connection; a lost connection is dropped, and the next call opens another.
    private func query(_ sql: String, _ parameters: [PostgresParameter]) throws(SidecarError) -> PostgresRows {
        try pool.withConnection { connection throws(SidecarError) in try connection.query(sql, parameters) }
    }

    /// A timestamp column as ISO 8601 in UTC with milliseconds.
    private static func timestamp(_ column: String) -> String {
        "to_char(\(column) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    }

    private static func optional(_ value: String?) -> PostgresParameter {
        value.map { .text($0) } ?? .null
    }

    /// A PostgreSQL array literal of ids.
    private static func array(_ ids: [UInt64]) -> String {
        "{\(ids.map(String.init).joined(separator: ","))}"
    }
}
