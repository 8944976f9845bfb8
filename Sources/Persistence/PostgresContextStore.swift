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
    struct Pending {
        var record: ContextRecord
        var keep: Int
        /// The home's epoch of the record's tenant (``claimHome(of:node:)``), 0 when unclaimed.
        var epoch: Int64
    }

    private struct State {
        var queue: [Pending] = []
        var started = false
        var closed = false
        /// Whether PostgreSQL took the last batch or connection attempt; true until one fails, so
        /// the first records after start wait for the first connection instead of being refused.
        var connected = true
        var batches = 0
        /// The tenants this store's node became the home of, with the epoch it got.
        var epochs: [String: Int64] = [:]
        /// Tenants whose commits the fence refused since ``takeFenced()`` was last called.
        var fenced: Set<String> = []
    }

    /// libpq connection string or `postgresql://` URI.
    public let url: String
    /// Most records waiting for the store's thread; ``submit(_:keep:)`` refuses beyond it.
    public let queueCapacity: Int
    /// Most records per transaction.
    public let maxBatch: Int
    private let logger: Logger
    private let state = NIOLockedValueBox(State())
    private let worker = WorkerThread(name: "postgres-contexts")

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
        try load(url: url, selectAll, [])
    }

    /// Every kept version of `tenant`'s contexts, in ``load(url:)``'s order; blocks while it reads.
    /// - Throws: ``ErrorCode/storageUnavailable`` when PostgreSQL cannot be read.
    public func load(tenant: String) throws(BusError) -> [ContextRecord] {
        do {
            return try Self.load(url: url, Self.selectTenant, [.text(tenant)])
        } catch {
            throw Self.unavailable(error.message)
        }
    }

    /// Makes `node` the home of `tenant`'s contexts in PostgreSQL, with a new epoch that this
    /// store's later commits of the tenant carry: from then on, commits of an earlier home of the
    /// tenant are refused, and one under way finishes first (it holds the row). Call it before
    /// reading the tenant again (``load(tenant:)``). Blocks.
    /// - Throws: ``ErrorCode/storageUnavailable`` when PostgreSQL cannot be written.
    public func claimHome(of tenant: String, node: String) throws(BusError) {
        do {
            let connection = try PostgresConnection(url: url)
            try PostgresStore.checkSchema(connection)
            // An earlier home's commit under way holds the row; one cut off mid-transaction would
            // hold it until PostgreSQL drops its connection: the claim gives up after 5 s instead.
            try connection.execute("SET lock_timeout = '5s'")
            let epoch = try connection.query(Self.claimHome, [.text(tenant), .text(node)]).integer(0, 0)
            state.withLockedValue { $0.epochs[tenant] = epoch }
        } catch {
            throw Self.unavailable(error.message)
        }
    }

    private static func load(url: String, _ query: String, _ parameters: [PostgresParameter]) throws(SidecarError)
        -> [ContextRecord]
    {
        let connection = try PostgresConnection(url: url)
        try PostgresStore.checkSchema(connection)
        let rows = try connection.query(query, parameters)
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
        if first { worker.start(logger: logger) { [self] in try run(report) } }
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
            state.queue.append(Pending(record: record, keep: keep, epoch: state.epochs[record.tenant] ?? 0))
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

    /// The tenants whose commits the fence refused since the last call (another node claimed
    /// their home in PostgreSQL): this node must claim them again before it writes them.
    public func takeFenced() -> Set<String> {
        state.withLockedValue { state in
            defer { state.fenced = [] }
            return state.fenced
        }
    }

    /// Its thread as a supervised child (/readyz, /metrics).
    public var child: ChildStatus { worker.status }

    /// Refuses further records, commits what is queued (reporting it), then stops the thread.
    /// Blocks until done; a second call returns at once.
    public func close() {
        let running = state.withLockedValue { state in
            state.closed = true
            return state.started
        }
        guard running else { return }
        worker.stop()
        worker.join()
    }

    private static func unavailable(_ why: String) -> BusError {
        BusError(.storageUnavailable, "context storage is unavailable: \(why)", retryAfterMs: 1_000)
    }

    // MARK: - The store's thread

    private func run(_ report: @Sendable (ContextStorageOutcome) -> Void) throws {
        var link = SidecarLink<PostgresConnection>(name: "PostgreSQL", meanwhile: "context writes are refused")
        while true {
            try worker.checkpoint()
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
        // A transaction left open by a node cut off from PostgreSQL would hold the rows of its
        // tenants' homes (the fence) until the server drops it: at most 10 s.
        try connection.execute("SET idle_in_transaction_session_timeout = '10s'")
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
            try write(batch, on: connection)
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

    /// BEGIN, COPY into the staging table, the homes' fence (a batch with a record of a tenant
    /// whose home moved on since this node claimed it is refused whole), upsert and prune, COMMIT; rolled back on any error
    /// (the staging rows go with it, or with the COMMIT: `ON COMMIT DELETE ROWS`).
    private func write(_ batch: [Pending], on connection: PostgresConnection) throws(SidecarError) {
        try connection.execute("BEGIN")
        do throws(SidecarError) {
            try connection.copy(
                "COPY context_batch (\(Self.stagingColumns)) FROM STDIN (FORMAT binary)", Self.copyData(batch))
            if batch.contains(where: { $0.epoch > 0 }) {
                let rows = try connection.query(Self.fencedTenants)
                let tenants = Set((0..<rows.count).map { rows.string($0, 0) })
                if !tenants.isEmpty {
                    state.withLockedValue { $0.fenced.formUnion(tenants) }
                    throw SidecarError(
                        message: "another node became the home of the contexts of \(tenants.sorted())",
                        connectionLost: false)
                }
            }
            try connection.execute(Self.upsertAndPrune)
            try connection.execute("COMMIT")
        } catch {
            if !error.connectionLost { try? connection.execute("ROLLBACK") }
            throw error
        }
    }
}
