import Bus
import Foundation

/// The statements of the ``PostgresStore``, each one round trip for a whole batch.
extension PostgresConnection {
    /// Rows per multi-row INSERT: 12 parameters each stays far below PostgreSQL's 65,535.
    static let rowsPerInsert = 1_000

    /// Applies `operations` in one transaction, grouped by kind (each kind keeps its order).
    /// - Parameter replaying: they come from the spool, so some may have been committed already
    ///   (messages already stored are skipped; otherwise a binary COPY, which cannot skip, is cheaper).
    /// - Parameter auditing: whether to make the audit events (nobody may be listening).
    /// - Returns: the audit events of what was committed (queued and acknowledged stored messages).
    func apply(_ operations: [StoreOperation], now: UInt64, replaying: Bool = false, auditing: Bool = true)
        throws(SidecarError) -> [AuditEvent]
    {
        var queued: [StoredMessage] = []
        var acked: [UInt64] = []
        var released: [UInt64] = []
        var deadByReason: [String: [(id: UInt64, attempts: UInt16)]] = [:]
        var unstoredDead: [(StoredMessage, String)] = []
        var registrations: [(tenant: String, agentID: String, record: AgentRecord?)] = []
        for operation in operations {
            switch operation {
            case .enqueue(let message): queued.append(message)
            case .settle(let id, _, nil): acked.append(id)
            case .settle(let id, let attempts, let reason?):
                deadByReason[reason, default: []].append((id, attempts))
            case .release(let ids): released += ids
            case .deadLetter(let message, let reason): unstoredDead.append((message, reason))
            case .saveAgent(let tenant, let agentID, let record): registrations.append((tenant, agentID, record))
            }
        }
        // A COPY carries the BEGIN in its own round trip.
        let copying = !replaying && !queued.isEmpty
        if !copying { try execute("BEGIN") }
        do throws(SidecarError) {
            if copying {
                try copyMessages(queued, beginning: true)
            } else {
                for chunk in queued.chunked(Self.rowsPerInsert) { try insertMessages(chunk) }
            }
            var registry: [AuditEvent] = []
            for (tenant, agentID, record) in registrations {
                try saveAgent(tenant: tenant, agentID: agentID, record)
                registry.append(
                    AuditEvent(
                        kind: record == nil ? "agent.unregistered" : "agent.registered", tenant: tenant,
                        agentID: agentID, at: now, detail: record.map { ["type": $0.agentType] } ?? [:]))
            }
            for chunk in unstoredDead.chunked(Self.rowsPerInsert) { try insertDeadLetters(chunk) }
            var events =
                !auditing
                ? []
                : queued.map { message in
                    AuditEvent(
                        kind: "message.queued", tenant: message.tenant, agentID: message.from, at: now,
                        detail: ["to": message.to, "message": "\(message.id)", "bytes": "\(message.payload.count)"])
                }
            if !acked.isEmpty {
                let rows = try query(
                    """
                    UPDATE messages SET status = 'acked', updated_at = now()
                    WHERE id = ANY($1::bigint[]) AND status = 'delivered'
                    """ + (auditing ? " RETURNING tenant_id, to_agent, id" : ""), [.integers(acked)])
                for row in 0..<rows.count {
                    events.append(
                        AuditEvent(
                            kind: "message.acked", tenant: rows.string(row, 0), agentID: rows.string(row, 1), at: now,
                            detail: ["message": "\(rows.integer(row, 2))"]))
                }
            }
            if !released.isEmpty {
                // After the inserts and acknowledgements of this batch: a message stored in it may
                // be released in it, and one acknowledged is settled, not released.
                try query(
                    """
                    UPDATE messages SET status = 'queued', updated_at = now()
                    WHERE id = ANY($1::bigint[]) AND status = 'delivered'
                    """, [.integers(released)])
            }
            for (reason, letters) in deadByReason.sorted(by: { $0.key < $1.key }) {
                try query(
                    """
                    WITH dead AS (
                        UPDATE messages SET status = 'dead_lettered', last_error = $2, updated_at = now(),
                            attempts = greatest(messages.attempts, given.attempts)
                        FROM unnest($1::bigint[], $3::smallint[]) AS given (id, attempts)
                        WHERE messages.id = given.id AND status IN ('queued', 'delivered')
                        RETURNING messages.id, tenant_id, to_agent, from_agent, messages.attempts, payload)
                    INSERT INTO dead_letters (message_id, tenant_id, to_agent, from_agent, reason, attempts, payload)
                    SELECT id, tenant_id, to_agent, from_agent, $2, attempts, payload FROM dead
                    """,
                    [
                        .integers(letters.map(\.id)), .text(reason), .integers(letters.map(\.attempts)),
                    ])
            }
            // The registry's history; the messages' is in their own rows (created, updated, status).
            try insertAudit(registry)
            try execute("COMMIT")
            return events
        } catch {
            if !error.connectionLost { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Hands out up to `limit` messages of the receiver's backlog, oldest first, counting an attempt
    /// for each: those never handed out, and those handed out more than `leaseMs` ago and never
    /// settled (their session went without saying), or with `resuming` every one handed out.
    func backlog(of agent: AgentKey, resuming: Bool, limit: Int, leaseMs: UInt64) throws(SidecarError)
        -> [StoredMessage]
    {
        let rows = try query(
            """
            UPDATE messages SET status = 'delivered', attempts = attempts + 1, updated_at = now()
            WHERE id IN (
                SELECT id FROM messages
                WHERE tenant_id = $1 AND to_agent = $2 AND expires_at > now()
                    AND (status = 'queued' OR (status = 'delivered'
                        AND ($3 OR updated_at < now() - make_interval(secs => $5::bigint / 1000.0))))
                ORDER BY id LIMIT $4 FOR UPDATE)
            RETURNING id, from_agent, kind, subject, deadline_ms, (extract(epoch FROM expires_at) * 1000)::bigint,
                payload, coalesce(idempotency_key, ''), attempts - 1
            """,
            [
                .text(agent.tenant), .text(agent.agentID),
                .text(resuming ? "true" : "false"), .text("\(limit)"), .text("\(leaseMs)"),
            ])
        return (0..<rows.count).map { row in
            StoredMessage(
                id: UInt64(rows.integer(row, 0)), tenant: agent.tenant, to: agent.agentID,
                from: rows.string(row, 1), kind: DeliveryKind(rawValue: UInt8(rows.integer(row, 2))) ?? .direct,
                subject: rows.string(row, 3), deadline: rows.isNull(row, 4) ? nil : UInt64(rows.integer(row, 4)),
                expiresAt: UInt64(rows.integer(row, 5)), payload: rows.bytes(row, 6),
                idempotencyKey: rows.string(row, 7), attempts: UInt16(rows.integer(row, 8)))
        }.sorted { $0.id < $1.id }
    }

    /// Dead-letters stored messages past their expiry (reason `deadline_exceeded`), except those
    /// a session may still be delivering (handed out less than `leaseMs` ago).
    /// - Returns: their audit events.
    func expireBacklog(now: UInt64, leaseMs: UInt64) throws(SidecarError) -> [AuditEvent] {
        let rows = try query(
            """
            WITH dead AS (
                UPDATE messages SET status = 'dead_lettered', last_error = 'deadline_exceeded', updated_at = now()
                WHERE expires_at <= now() AND (status = 'queued' OR (status = 'delivered'
                    AND updated_at < now() - make_interval(secs => $1::bigint / 1000.0)))
                RETURNING id, tenant_id, to_agent, from_agent, attempts, payload)
            INSERT INTO dead_letters (message_id, tenant_id, to_agent, from_agent, reason, attempts, payload)
            SELECT id, tenant_id, to_agent, from_agent, 'deadline_exceeded', attempts, payload FROM dead
            RETURNING tenant_id, to_agent, from_agent, message_id, attempts
            """, [.text("\(leaseMs)")])
        return (0..<rows.count).map { row in
            AuditEvent(
                kind: "message.dead_lettered", tenant: rows.string(row, 0), agentID: rows.string(row, 1), at: now,
                detail: [
                    "from": rows.string(row, 2), "message": "\(rows.integer(row, 3))",
                    "reason": ErrorCode.deadlineExceeded.name, "attempts": "\(rows.integer(row, 4))",
                ])
        }
    }

    /// Deletes up to `limit` settled messages (acknowledged or dead-lettered) settled before
    /// `before` (Unix ms), oldest first. Their ids are below the first id of `before` (a message is
    /// settled after it is made), so the primary key finds them. - Returns: how many it deleted.
    func pruneSettled(before: UInt64, limit: Int) throws(SidecarError) -> Int {
        try query(
            """
            DELETE FROM messages WHERE id IN (
                SELECT id FROM messages
                WHERE id < $1::bigint AND status IN ('acked', 'dead_lettered')
                    AND updated_at < to_timestamp($2::bigint / 1000.0)
                ORDER BY id LIMIT $3::int)
            RETURNING id
            """, [.text("\(StoredMessage.firstID(atUnixMs: before))"), .text("\(before)"), .text("\(limit)")]
        ).count
    }

    /// Every registered agent.
    func agents() throws(SidecarError) -> [(AgentKey, AgentDescription)] {
        let rows = try query(
            "SELECT tenant_id, agent_id, agent_type, array_to_json(capabilities)::text, location, metadata::text FROM agents"
        )
        let decoder = JSONDecoder()
        return (0..<rows.count).map { row in
            let capabilities = (try? decoder.decode([String].self, from: Data(rows.bytes(row, 3)))) ?? []
            let metadata = (try? decoder.decode([String: String].self, from: Data(rows.bytes(row, 5)))) ?? [:]
            let record = AgentRecord(
                agentType: rows.string(row, 2), capabilities: capabilities, location: rows.string(row, 4),
                metadata: metadata)
            return (AgentKey(tenant: rows.string(row, 0), agentID: rows.string(row, 1)), record.description)
        }
    }

    private func saveAgent(tenant: String, agentID: String, _ record: AgentRecord?) throws(SidecarError) {
        guard let record else {
            try query("DELETE FROM agents WHERE tenant_id = $1 AND agent_id = $2", [.text(tenant), .text(agentID)])
            return
        }
        let metadata = (try? JSONEncoder().encode(record.metadata)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        try query(
            """
            INSERT INTO agents (tenant_id, agent_id, agent_type, capabilities, location, metadata)
            VALUES ($1, $2, $3, $4::text[], $5, $6::jsonb)
            ON CONFLICT (tenant_id, agent_id) DO UPDATE SET agent_type = excluded.agent_type,
                capabilities = excluded.capabilities, location = excluded.location,
                metadata = excluded.metadata, registered_at = now()
            """,
            [
                .text(tenant), .text(agentID), .text(record.agentType), .text(Self.arrayLiteral(record.capabilities)),
                .text(record.location), .text(metadata),
            ])
    }

    /// The columns of a stored message, in the order both ways of writing them use.
    private static let messageColumns =
        "id, tenant_id, to_agent, from_agent, kind, subject, deadline_ms, expires_at, payload, idempotency_key, attempts, status"

    /// New messages, with one binary COPY: the cheapest way into PostgreSQL, parsing nothing.
    /// - Parameter beginning: the COPY opens the transaction (one round trip fewer than a BEGIN of its own).
    private func copyMessages(_ messages: [StoredMessage], beginning: Bool) throws(SidecarError) {
        var data = BinaryCopy()
        for message in messages {
            data.row(fields: 12)
            data.integer(Int64(bitPattern: message.id))
            data.text(message.tenant)
            data.text(message.to)
            data.text(message.from)
            data.integer(Int16(message.kind))
            data.text(message.subject)
            if let deadline = message.deadline { data.integer(Int64(deadline)) } else { data.null() }
            data.timestamp(unixMs: message.expiresAt)
            data.bytes(message.payload)
            if message.idempotencyKey.isEmpty { data.null() } else { data.text(message.idempotencyKey) }
            data.integer(Int16(message.attempts))
            data.text(message.status)
        }
        try copy(
            (beginning ? "BEGIN; " : "") + "COPY messages (\(Self.messageColumns)) FROM STDIN (FORMAT binary)",
            data.finished())
    }

    /// Messages that may be stored already (a replayed spool): the first copy stands.
    private func insertMessages(_ messages: ArraySlice<StoredMessage>) throws(SidecarError) {
        var parameters: [PostgresParameter] = []
        parameters.reserveCapacity(messages.count * 12)
        for message in messages {
            parameters += [
                .text("\(message.id)"), .text(message.tenant), .text(message.to), .text(message.from),
                .text("\(message.kind)"), .text(message.subject), message.deadline.map { .text("\($0)") } ?? .null,
                .text("\(message.expiresAt)"), .bytes(message.payload),
                message.idempotencyKey.isEmpty ? .null : .text(message.idempotencyKey), .text("\(message.attempts)"),
                .text(message.status),
            ]
        }
        try query(
            """
            INSERT INTO messages (\(Self.messageColumns))
            VALUES \(Self.rows(messages.count, width: 12, casts: [7: "to_timestamp(%::bigint / 1000.0)"]))
            ON CONFLICT (id) DO NOTHING
            """, parameters)
    }

    private func insertDeadLetters(_ letters: ArraySlice<(StoredMessage, String)>) throws(SidecarError) {
        var parameters: [PostgresParameter] = []
        for (message, reason) in letters {
            parameters += [
                .text(message.tenant), .text(message.to), .text(message.from), .text(reason),
                .text("\(message.attempts)"), .bytes(message.payload),
            ]
        }
        try query(
            """
            INSERT INTO dead_letters (tenant_id, to_agent, from_agent, reason, attempts, payload)
            VALUES \(Self.rows(letters.count, width: 6))
            """, parameters)
    }

    private func insertAudit(_ events: [AuditEvent]) throws(SidecarError) {
        let encoder = JSONEncoder()
        for chunk in events.chunked(Self.rowsPerInsert) {
            var parameters: [PostgresParameter] = []
            for event in chunk {
                let detail = (try? encoder.encode(event.detail)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                parameters += [
                    .text(event.tenant), .text(event.agentID), .text(event.kind), .text(detail), .text("\(event.at)"),
                ]
            }
            try query(
                """
                INSERT INTO audit_log (tenant_id, agent_id, kind, detail, at)
                VALUES \(Self.rows(chunk.count, width: 5, casts: [3: "%::jsonb", 4: "to_timestamp(%::bigint / 1000.0)"]))
                """, parameters)
        }
    }

    /// `($1, $2), ($3, $4)` for 2 rows of width 2; `casts` wraps a column's placeholder (`%`).
    private static func rows(_ count: Int, width: Int, casts: [Int: String] = [:]) -> String {
        (0..<count).map { row in
            "("
                + (0..<width).map { column in
                    let placeholder = "$\(row * width + column + 1)"
                    return casts[column].map { $0.replacingOccurrences(of: "%", with: placeholder) } ?? placeholder
                }.joined(separator: ", ") + ")"
        }.joined(separator: ", ")
    }

    /// A PostgreSQL array literal of quoted elements: `{"a","b\"c"}`.
    static func arrayLiteral(_ elements: [String]) -> String {
        "{"
            + elements.map { element in
                "\"" + element.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                    + "\""
            }.joined(separator: ",") + "}"
    }
}

extension StoredMessage {
    /// Its status column when it is first stored.
    fileprivate var status: String { handedOut ? "delivered" : "queued" }
}
