public import Bus
public import Logging
import NIOConcurrencyHelpers

/// Durable storage of contexts on PostgreSQL: every kept version of each context, one row of
/// `context_versions` each. The bus's `ContextService` is the authority while it runs; this store
/// commits what the service hands it, and ``load(url:)`` reads it all back at the next start.
/// Conforms to `ContextStorage` (see Gateway).
///
/// Group commit: ``submit(_:keep:)`` appends to a bounded queue and returns at once. One thread of
/// the store takes up to `maxBatch` records at a time, in order, and commits them in one transaction:
/// a binary COPY into a staging table, then one upsert and one prune for the whole batch, so a batch
/// costs four round trips whatever its size. Each batch's outcome is reported from that thread, in
/// submission order; a batch is reported committed only after its COMMIT succeeded.
///
/// Refused, never spooled: while PostgreSQL is unreachable, or the queue is full, ``submit(_:keep:)``
/// returns false and the service answers `storage_unavailable`. Unlike ``PostgresStore``, nothing
/// goes to disk to be applied later. A write is answered with its new version, and compare-and-swap
/// (a write naming the version it expects) is only correct if that version is durable before the
/// answer: a spooled write would be answered first, and a bus restarted before the spool was applied
/// would read the older version back and accept another write on top of it, forking the history.
public final class PostgresContextStore: Sendable {
    fileprivate struct Pending {
        var record: ContextRecord
        var keep: Int
    }

    private struct State {
        var queue: [Pending] = []
        var started = false
        var closed = false
        /// Whether PostgreSQL took the last batch or connection attempt; true until one fails, so
        /// the first records after start wait for the first connection instead of being refused.
        var connected = true
        var batches = 0
    }

    /// libpq connection string or `postgresql://` URI.
    public let url: String
    /// Most records waiting for the store's thread; ``submit(_:keep:)`` refuses beyond it.
    public let queueCapacity: Int
    /// Most records per transaction.
    public let maxBatch: Int
    private let logger: Logger
    private let state = NIOLockedValueBox(State())
    private let worker = WorkerThread()

    /// A store of `url`'s database; nothing runs, and nothing is accepted, until ``start(_:)``.
    public init(url: String, logger: Logger, queueCapacity: Int = 65_536, maxBatch: Int = 1_024) {
        self.url = url
        self.logger = logger
        self.queueCapacity = queueCapacity
        self.maxBatch = max(maxBatch, 1)
    }

    /// Whether PostgreSQL took the last batch or connection attempt (false: ``submit(_:keep:)`` refuses).
    /// A lost connection is noticed by the batch that fails on it.
    public var isConnected: Bool { state.withLockedValue { $0.connected } }

    /// Transactions committed since start (a batch each, or a record each when PostgreSQL refused a
    /// batch for good and its records were tried one by one).
    public var batches: Int { state.withLockedValue { $0.batches } }

    /// Records waiting for the store's thread, not yet in a batch.
    public var queued: Int { state.withLockedValue { $0.queue.count } }

    /// Every kept version of every context, by tenant, then context id (both in byte order), then
    /// version ascending. Metadata comes back sorted by key, one entry per key (a JSON object keeps
    /// no order, and the last of duplicate keys).
    /// - Throws: when the database cannot be reached, its schema is behind (run `acb migrate`), or a
    ///   row holds a value this build does not know.
    /// - Complexity: one query; every version and body is held in memory twice while it is read.
    public static func load(url: String) throws(SidecarError) -> [ContextRecord] {
        let connection = try PostgresConnection(url: url)
        try PostgresStore.checkSchema(connection)
        let rows = try connection.query(selectAll)
        var records: [ContextRecord] = []
        records.reserveCapacity(rows.count)
        for row in 0..<rows.count { records.append(try record(rows, row)) }
        return records
    }

    /// Sets where outcomes go and starts the store's thread, which connects at once and reconnects
    /// after a loss, with backoff. Call it once; later calls do nothing.
    /// - Parameter report: gets every batch's outcome, in submission order, on the store's thread.
    public func start(_ report: @escaping @Sendable (ContextStorageOutcome) -> Void) {
        let first = state.withLockedValue { state in
            defer { state.started = true }
            return !state.started && !state.closed
        }
        if first { worker.start { [self] in run(report) } }
    }

    /// Queues `record` for the next batch, whose transaction also removes the context's versions
    /// up to `record`'s version minus `keep` (none when `keep` is 0 or less). Never blocks.
    /// - Returns: false, queueing nothing, when the queue is full, the store is closed (or not
    ///   started), or PostgreSQL is not connected right now.
    public func submit(_ record: ContextRecord, keep: Int) -> Bool {
        let (accepted, wasEmpty) = state.withLockedValue { state in
            guard state.started, !state.closed, state.connected, state.queue.count < queueCapacity else {
                return (false, false)
            }
            state.queue.append(Pending(record: record, keep: keep))
            return (true, state.queue.count == 1)
        }
        // Only the first record of an empty queue wakes the thread: it takes the whole queue (and
        // wakes itself when it leaves some), so the records behind the first need no wake of their own.
        if wasEmpty { worker.wake() }
        return accepted
    }

    /// Removes and returns the records queued and not yet taken into a batch, in order; no outcome
    /// will be reported for them.
    public func discardQueued() -> [ContextRecord] {
        state.withLockedValue { state in
            defer { state.queue.removeAll() }
            return state.queue.map(\.record)
        }
    }

    /// Refuses further records, commits what is queued (reporting it), then stops the thread.
    /// Blocks until done; a second call returns at once.
    public func close() {
        let running = state.withLockedValue { state in
            state.closed = true
            return state.started
        }
        guard running else { return }
        worker.wake()
        worker.join()
    }

    private static func unavailable(_ why: String) -> BusError {
        BusError(.storageUnavailable, "context storage is unavailable: \(why)", retryAfterMs: 1_000)
    }

    // MARK: - The store's thread

    private func run(_ report: @Sendable (ContextStorageOutcome) -> Void) {
        var link = SidecarLink<PostgresConnection>(name: "PostgreSQL", meanwhile: "context writes are refused")
        while true {
            let (batch, closing) = take()
            var live = link.connection
            if !batch.isEmpty || !closing {  // closing with nothing to commit: no connection attempt to wait for
                live = link.live(now: MonotonicClock.nowMs(), logger: logger, connect: connect)?.connection
            }
            var outcomes: [ContextStorageOutcome] = []
            var committed = 0
            if !batch.isEmpty { (outcomes, committed) = commit(batch, on: live, link: &link) }
            // Before reporting: a service told of a failure finds submit refusing already.
            state.withLockedValue { state in
                state.connected = link.isConnected
                state.batches += committed
            }
            for outcome in outcomes { report(outcome) }
            if closing { break }
            worker.sleep(seconds: 0.25)
        }
    }

    /// The next batch, and whether it is the last (closed, and nothing queued behind it).
    private func take() -> (batch: [Pending], closing: Bool) {
        state.withLockedValue { state in
            var batch: [Pending] = []
            if state.queue.count <= maxBatch {
                swap(&batch, &state.queue)
            } else {
                batch = Array(state.queue.prefix(maxBatch))
                state.queue.removeFirst(maxBatch)
                worker.wake()  // the rest is the next batch
            }
            return (batch, state.closed && state.queue.isEmpty)
        }
    }

    private func connect() throws(SidecarError) -> PostgresConnection {
        let connection = try PostgresConnection(url: url)
        try PostgresStore.checkSchema(connection)
        try connection.execute(Self.createStaging)
        return connection
    }

    /// Commits `batch` in one transaction; if PostgreSQL refuses it for good (a value it will never
    /// take, such as a NUL in a text), each record in a transaction of its own, so one bad record
    /// does not fail the others.
    /// - Returns: the outcomes, in order, and the transactions committed.
    private func commit(
        _ batch: [Pending], on connection: PostgresConnection?, link: inout SidecarLink<PostgresConnection>
    ) -> (outcomes: [ContextStorageOutcome], committed: Int) {
        let records = batch.map(\.record)
        guard let connection else { return ([.failed(records, Self.unavailable("PostgreSQL is unreachable"))], 0) }
        do throws(SidecarError) {
            try Self.write(batch, on: connection)
            return ([.committed(records)], 1)
        } catch  where error.isPermanent && batch.count > 1 {
            var outcomes: [ContextStorageOutcome] = []
            var committed = 0
            for pending in batch {
                let current = link.connection
                let one = commit([pending], on: current, link: &link)
                outcomes += one.outcomes
                committed += one.committed
            }
            return (outcomes, committed)
        } catch {
            if error.connectionLost || !connection.isOpen { link.lost() }
            if error.isPermanent {
                logger.error("PostgreSQL refused a context version", metadata: ["error": "\(error.message)"])
            } else {
                logger.warning(
                    "PostgreSQL failed a batch of context versions",
                    metadata: ["error": "\(error.message)", "records": "\(batch.count)"])
            }
            return ([.failed(records, Self.unavailable(error.message))], 0)
        }
    }

    /// BEGIN, COPY into the staging table, upsert and prune, COMMIT; rolled back on any error
    /// (the staging rows go with it, or with the COMMIT: `ON COMMIT DELETE ROWS`).
    private static func write(_ batch: [Pending], on connection: PostgresConnection) throws(SidecarError) {
        try connection.execute("BEGIN")
        do throws(SidecarError) {
            try connection.copy("COPY context_batch (\(stagingColumns)) FROM STDIN (FORMAT binary)", copyData(batch))
            try connection.execute(upsertAndPrune)
            try connection.execute("COMMIT")
        } catch {
            if !error.connectionLost { try? connection.execute("ROLLBACK") }
            throw error
        }
    }
}

// MARK: - Statements

extension PostgresContextStore {
    /// Where a batch is copied before one upsert and one prune take it into `context_versions`: a
    /// temporary table of the connection, emptied by every COMMIT. Arrays and JSON arrive as text
    /// and are cast by the upsert. `seq` is the record's place in the batch, `keep` its pruning.
    private static let createStaging = """
        CREATE TEMP TABLE IF NOT EXISTS context_batch (
            seq integer, keep bigint, tenant_id text, context_id text, version bigint, revision bigint,
            owner_id text, kind text, content_type smallint, label text, scope smallint, readers text,
            writers text, metadata text, parents text, source text, checksum bytea, size bigint,
            created_ms bigint, updated_ms bigint, updated_by text, expires_ms bigint, state smallint, body bytea
        ) ON COMMIT DELETE ROWS
        """

    /// The staging table's columns, in the order ``copyData(_:)`` writes them.
    private static let stagingColumns = """
        seq, keep, tenant_id, context_id, version, revision, owner_id, kind, content_type, label, scope, readers, \
        writers, metadata, parents, source, checksum, size, created_ms, updated_ms, updated_by, expires_ms, state, body
        """

    /// One simple query, two statements (the prune must see the rows the upsert wrote, which a
    /// single statement's CTEs would not). A version given twice in a batch: the later one stands.
    /// Versions of a context given with different `keep`s: the prune goes as far as the furthest.
    private static let upsertAndPrune = """
        INSERT INTO context_versions (tenant_id, context_id, version, revision, owner_id, kind, content_type,
            label, scope, readers, writers, metadata, parents, source, checksum, size, created_ms, updated_ms,
            updated_by, expires_ms, state, body)
        SELECT DISTINCT ON (tenant_id, context_id, version) tenant_id, context_id, version, revision, owner_id,
            kind, content_type, label, scope, readers::text[], writers::text[], metadata::jsonb, parents::jsonb,
            source, checksum, size, created_ms, updated_ms, updated_by, expires_ms, state, body
        FROM context_batch
        ORDER BY tenant_id, context_id, version, seq DESC
        ON CONFLICT (tenant_id, context_id, version) DO UPDATE SET revision = excluded.revision,
            owner_id = excluded.owner_id, kind = excluded.kind, content_type = excluded.content_type,
            label = excluded.label, scope = excluded.scope, readers = excluded.readers,
            writers = excluded.writers, metadata = excluded.metadata, parents = excluded.parents,
            source = excluded.source, checksum = excluded.checksum, size = excluded.size,
            created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by,
            expires_ms = excluded.expires_ms, state = excluded.state, body = excluded.body;
        DELETE FROM context_versions AS stale
        USING (
            SELECT tenant_id, context_id, max(version - keep) AS through FROM context_batch
            WHERE keep > 0 AND version > keep
            GROUP BY tenant_id, context_id) AS pruned
        WHERE stale.tenant_id = pruned.tenant_id AND stale.context_id = pruned.context_id
            AND stale.version <= pruned.through
        """

    /// Every row, in ``load(url:)``'s order; metadata as `{{key, value}, …}` sorted by key and
    /// parents as `{{id, version}, …}` in order, both `text[]`, read like readers and writers.
    private static let selectAll = """
        SELECT tenant_id, context_id, version, revision, owner_id, kind, content_type, label, scope, readers,
            writers,
            ARRAY(SELECT ARRAY[key, value] FROM jsonb_each_text(metadata) ORDER BY key COLLATE "C"),
            ARRAY(SELECT ARRAY[parent ->> 'id', parent ->> 'version']
                FROM jsonb_array_elements(parents) WITH ORDINALITY AS given (parent, place) ORDER BY place),
            source, checksum, size, created_ms, updated_ms, updated_by, expires_ms, state, body
        FROM context_versions
        ORDER BY tenant_id COLLATE "C", context_id COLLATE "C", version
        """

    /// The batch in PostgreSQL's binary COPY format, columns as in ``stagingColumns``.
    private static func copyData(_ batch: [Pending]) -> [UInt8] {
        var data = BinaryCopy()
        for (seq, pending) in batch.enumerated() {
            let head = pending.record.head
            let attributes = head.attributes
            data.row(fields: 24)
            data.integer(Int32(clamping: seq))
            data.integer(Int64(max(pending.keep, 0)))
            data.text(pending.record.tenant)
            data.text(head.id)
            data.integer(Int64(bitPattern: head.version))
            data.integer(Int64(bitPattern: head.revision))
            data.text(head.owner)
            data.text(attributes.kind)
            data.integer(Int16(attributes.contentType.rawValue))
            data.text(attributes.label)
            data.integer(Int16(attributes.scope.rawValue))
            data.text(PostgresConnection.arrayLiteral(attributes.readers))
            data.text(PostgresConnection.arrayLiteral(attributes.writers))
            data.text(json(attributes.metadata))
            data.text(json(attributes.parents))
            data.text(attributes.source)
            data.bytes(head.checksum)
            data.integer(Int64(bitPattern: head.size))
            data.integer(Int64(bitPattern: head.createdMs))
            data.integer(Int64(bitPattern: head.updatedMs))
            data.text(head.updatedBy)
            data.integer(Int64(bitPattern: head.expiresMs))
            data.integer(Int16(head.state.rawValue))
            data.bytes(pending.record.body)
        }
        return data.finished()
    }

    /// Row `row` of ``selectAll`` as a record.
    private static func record(_ rows: PostgresRows, _ row: Int) throws(SidecarError) -> ContextRecord {
        let tenant = rows.string(row, 0)
        let id = rows.string(row, 1)
        func decoded<Value: RawRepresentable>(_ what: String, _ column: Int) throws(SidecarError) -> Value
        where Value.RawValue == UInt8 {
            guard let raw = UInt8(exactly: rows.integer(row, column)), let value = Value(rawValue: raw) else {
                throw SidecarError(
                    message: "context \(tenant)/\(id) has an unknown \(what) \(rows.integer(row, column))",
                    connectionLost: false)
            }
            return value
        }
        let metadata = try texts(rows.bytes(row, 11))
        let parentFields = try texts(rows.bytes(row, 12))  // written by this store: every version is a number
        let parents = stride(from: 0, to: parentFields.count - 1, by: 2).compactMap { index in
            UInt64(parentFields[index + 1]).map { ContextParent(id: parentFields[index], version: $0) }
        }
        let attributes = ContextAttributes(
            kind: rows.string(row, 5), contentType: try decoded("content type", 6), label: rows.string(row, 7),
            scope: try decoded("scope", 8),
            readers: try texts(rows.bytes(row, 9)), writers: try texts(rows.bytes(row, 10)),
            metadata: stride(from: 0, to: metadata.count - 1, by: 2).map {
                MetadataEntry(key: metadata[$0], value: metadata[$0 + 1])
            },
            parents: parents, source: rows.string(row, 13))
        let head = ContextHead(
            id: id, owner: rows.string(row, 4), attributes: attributes,
            version: UInt64(bitPattern: rows.integer(row, 2)), revision: UInt64(bitPattern: rows.integer(row, 3)),
            checksum: rows.bytes(row, 14), size: UInt64(bitPattern: rows.integer(row, 15)),
            createdMs: UInt64(bitPattern: rows.integer(row, 16)), updatedMs: UInt64(bitPattern: rows.integer(row, 17)),
            updatedBy: rows.string(row, 18), expiresMs: UInt64(bitPattern: rows.integer(row, 19)),
            state: try decoded("state", 20))
        return ContextRecord(tenant: tenant, head: head, body: rows.bytes(row, 21))
    }

    /// The elements of a `text[]` of any dimensions in PostgreSQL's binary format (dimensions,
    /// flags, element type, a size and lower bound per dimension, then each element as a length and
    /// its bytes, -1 for NULL), flattened in row-major order, NULL as "".
    private static func texts(_ bytes: [UInt8]) throws(SidecarError) -> [String] {
        let truncated = SidecarError(message: "PostgreSQL sent a truncated text[]", connectionLost: false)
        var offset = 0
        func int32() throws(SidecarError) -> Int {
            guard offset + 4 <= bytes.count else { throw truncated }
            defer { offset += 4 }
            return Int(bytes[offset..<offset + 4].reduce(Int32(0)) { $0 << 8 | Int32($1) })
        }
        guard !bytes.isEmpty else { return [] }
        let dimensions = try int32()
        offset += 8  // whether it holds NULLs, the element type
        var count = dimensions > 0 ? 1 : 0
        for _ in 0..<max(dimensions, 0) {
            let size = try int32()
            offset += 4  // the lower bound
            count *= max(size, 0)
        }
        var elements: [String] = []
        for _ in 0..<count {
            let length = try int32()
            guard offset + max(length, 0) <= bytes.count else { throw truncated }
            elements.append(length < 0 ? "" : String(decoding: bytes[offset..<offset + length], as: UTF8.self))
            offset += max(length, 0)
        }
        return elements
    }

    /// Metadata as a JSON object (of a key given twice, jsonb keeps the last value).
    private static func json(_ metadata: [MetadataEntry]) -> String {
        let entries = metadata.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
        return "{\(entries.joined(separator: ","))}"
    }

    /// Parents as a JSON array of `{"id": …, "version": …}`.
    private static func json(_ parents: [ContextParent]) -> String {
        let entries = parents.map { "{\"id\":\(jsonString($0.id)),\"version\":\($0.version)}" }
        return "[\(entries.joined(separator: ","))]"
    }

    /// `string` as a JSON string literal (RFC 8259 §7). A NUL becomes `\u0000`, which jsonb refuses:
    /// that record fails, alone (see ``commit(_:on:link:)``).
    private static func jsonString(_ string: String) -> String {
        guard string.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") })
        else { return "\"" + string + "\"" }
        var json = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\t": json += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: json.unicodeScalars.append(scalar)
            }
        }
        return json + "\""
    }
}
