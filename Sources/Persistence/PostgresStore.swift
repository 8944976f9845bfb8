public import Bus
import Foundation
public import Logging
import NIOConcurrencyHelpers

/// Durable storage on PostgreSQL: messages for offline agents, the registry (with its history in
/// `audit_log`) and dead letters. Conforms to the bus's `MessageStore` (see Gateway).
///
/// Callers never wait on PostgreSQL: operations go to a bounded queue that the store's writers
/// apply in batches, one transaction per batch (group commit: a batch is what arrived while the
/// writers were busy, at most ``Settings/maxBatch``). An enqueue's completion runs once its
/// transaction has committed.
///
/// Writers: ``Settings/writers`` threads, each with a connection of its own, apply batches side by
/// side, so one batch's round trips and commit do not hold up the next. The first writer does what
/// needs order, alone: it reads backlogs, replays the spool, and applies releases and registrations,
/// each only once no other writer has a batch in flight (the others take nothing new meanwhile).
/// The others take only enqueues and settlements, and only while the first is connected and the
/// spool is empty. That is safe out of order: a message's settlement comes after its enqueue
/// committed (it is delivered only then), and a receiver takes what was stored for it in id order.
///
/// While PostgreSQL is unreachable, writes go to an on-disk spool (a ``Journal``) instead, and an
/// enqueue is complete once spooled; when the database is back, the spool is applied in order
/// before anything newer. Reads fail with `storage_unavailable` meanwhile (the bus retries them).
/// Full queue (in count or payload bytes): a write someone waits for (an enqueue, a registration, a
/// release) is refused with `storage_unavailable`; the others (settlements, dead letters) are taken
/// up to twice the queue's bounds, then dropped and counted in ``dropped`` (an acknowledgement
/// dropped so is delivered again after a restart). Full spool: the same.
public final class PostgresStore: Sendable {
    /// How the store connects and how far it may queue and spool.
    public struct Settings: Sendable {
        /// libpq connection string or `postgresql://` URI.
        public var url: String
        /// Where writes are spooled while PostgreSQL is unreachable.
        public var spoolDirectory: String
        /// Most bytes the spool may hold.
        public var spoolBytes = 1 << 30
        /// Most writes waiting in memory for the next batch.
        public var queueCapacity = 65_536
        /// Most payload bytes those writes may hold.
        public var queueBytes = 256 << 20
        /// Most writes per transaction.
        public var maxBatch = 4_096
        /// Connections applying batches side by side (see the type's description); at least 1.
        public var writers = 2
        /// How often stored messages past their expiry are dead-lettered, and settled ones past
        /// ``retentionMs`` deleted, in ms.
        public var sweepMs: UInt64 = 1_000
        /// How long a settled message (acknowledged or dead-lettered) stays in `messages` after it
        /// was settled, in ms (its record for the admin API); 0 keeps them all. A sweep deletes at
        /// most ``pruneBatch`` at a time, for at most 100 ms.
        public var retentionMs: UInt64 = 7 * 86_400_000
        /// Rows per deletion of settled messages.
        public var pruneBatch = 5_000
        /// How long a handed-out message belongs to the session it went to: after that, unsettled,
        /// it is handed out again (its session ended without saying). The bus sets it to its ack
        /// timeout times its delivery attempts.
        public var leaseMs: UInt64 = 150_000

        public init(url: String, spoolDirectory: String) {
            self.url = url
            self.spoolDirectory = spoolDirectory
        }
    }

    /// The schema version this build expects (the newest file in `migrations/`).
    public static let schemaVersion = 6

    private struct Write {
        var operation: StoreOperation
        var done: (@Sendable (BusError?) -> Void)?

        /// Payload bytes it holds in memory.
        var bytes: Int {
            switch operation {
            case .enqueue(let message), .deadLetter(let message, _): message.payload.count
            case .settle, .release, .saveAgent: 0
            }
        }
    }

    private struct Read {
        var agent: AgentKey
        var resuming: Bool
        var limit: Int
        var done: @Sendable (Result<[StoredMessage], BusError>) -> Void
    }

    private struct State {
        var writes: [Write] = []
        /// Payload bytes of `writes`.
        var bytes = 0
        var reads: [Read] = []
        /// Per writer: whether it is applying a batch.
        var busy: [Bool]
        /// The first writer is waiting for the others to finish their batches: they take nothing new.
        var fenced = false
        var closed = false
        var connected = false
        var dropped = 0
        var batches = 0

        /// Takes the oldest writes, at most `limit`, stopping at the first one `allowed` refuses.
        mutating func take(_ limit: Int, while allowed: (StoreOperation) -> Bool = { _ in true }) -> [Write] {
            let writes = Array(self.writes.prefix(limit).prefix { allowed($0.operation) })
            self.writes.removeFirst(writes.count)
            bytes -= writes.reduce(0) { $0 + $1.bytes }
            return writes
        }

        /// The writer to wake for queued writes: the first if it is idle, else an idle one that may
        /// take them (the spool, behind a lock of its own, is looked at only then).
        func idleWriter(spoolIsEmpty: @autoclosure () -> Bool) -> Int? {
            guard !writes.isEmpty else { return nil }
            if !busy[0] { return 0 }
            guard !fenced, connected, !writes[0].operation.needsOrder, spoolIsEmpty() else { return nil }
            return busy.firstIndex(of: false)
        }
    }

    public let settings: Settings
    private let state: NIOLockedValueBox<State>
    /// The writers' threads; the first is ``run()``'s, the others ``help(_:)``'s.
    private let workers: [WorkerThread]
    private let spool: Journal
    private let audit: (@Sendable ([AuditEvent]) -> Void)?
    private let auditIsFull: @Sendable () -> Bool
    private let logger: Logger

    /// Opens the spool and starts the store's thread, which connects (and reconnects, with backoff) by itself.
    /// - Parameters:
    ///   - audit: receives the audit events of committed operations, from the store's threads; nil
    ///     when nobody listens (they are not made).
    ///   - auditIsFull: whether the audit stream can take no more events: enqueues are then
    ///     refused, since their `message.queued` events would be lost.
    public init(
        settings: Settings, logger: Logger, audit: (@Sendable ([AuditEvent]) -> Void)?,
        auditIsFull: @escaping @Sendable () -> Bool = { false }
    ) throws(SidecarError) {
        self.settings = settings
        self.logger = logger
        self.audit = audit
        self.auditIsFull = auditIsFull
        self.spool = try Journal(directory: settings.spoolDirectory, capacity: settings.spoolBytes)
        let writers = max(1, settings.writers)
        state = NIOLockedValueBox(State(busy: Array(repeating: false, count: writers)))
        workers = (0..<writers).map { WorkerThread(name: $0 == 0 ? "postgres" : "postgres-\($0 + 1)") }
        workers[0].start(logger: logger) { [self] in try run() }
        for writer in 1..<writers { workers[writer].start(logger: logger) { [self] in try help(writer) } }
    }

    /// Its threads as supervised children (/readyz, /metrics): `postgres`, `postgres-2`, ….
    public var children: [ChildStatus] { workers.map(\.status) }

    /// Whether the store is connected to PostgreSQL (false: degraded, writes are spooled).
    public var isConnected: Bool { state.withLockedValue { $0.connected } }

    /// Bytes waiting in the spool for PostgreSQL.
    public var spooledBytes: Int { spool.pendingBytes }

    /// Writes dropped because the queue and spool were full.
    public var dropped: Int { state.withLockedValue { $0.dropped } }

    /// Writes waiting for the store's thread.
    public var queued: Int { state.withLockedValue { $0.writes.count } }

    /// Transactions committed since start (each one a batch of writes).
    public var batches: Int { state.withLockedValue { $0.batches } }

    /// What the bus reads back at start.
    public struct Snapshot: Sendable {
        /// Every registered agent.
        public var agents: [(AgentKey, AgentDescription)]
        /// The highest stored message id: new ids must be above it.
        public var lastMessageID: UInt64
    }

    /// Checks that `url`'s schema is the one this build expects, and reads the ``Snapshot``.
    /// - Throws: when the database cannot be reached, or its schema is behind (run `acb migrate`).
    public static func open(url: String) throws(SidecarError) -> Snapshot {
        let connection = try PostgresConnection(url: url)
        try checkSchema(connection)
        let last = try connection.query("SELECT coalesce(max(id), 0) FROM messages")
        return Snapshot(agents: try connection.agents(), lastMessageID: UInt64(last.integer(0, 0)))
    }

    /// Throws unless `connection`'s database has at least ``schemaVersion`` applied (shared with
    /// ``PostgresContextStore``).
    static func checkSchema(_ connection: PostgresConnection) throws(SidecarError) {
        let version = try Migrator.appliedVersion(connection)
        guard version >= schemaVersion else {
            throw SidecarError(
                message:
                    "the database schema is at version \(version) and this build needs \(schemaVersion): run `acb migrate`",
                connectionLost: false)
        }
    }

    public func enqueue(_ message: StoredMessage, done: @escaping @Sendable (BusError?) -> Void) {
        guard !auditIsFull() else { return done(Self.unavailable("the audit journal is full")) }
        submit(Write(operation: .enqueue(message), done: done))
    }

    public func settle(_ id: UInt64, attempts: UInt16, deadLetterReason reason: ErrorCode?) {
        submit(Write(operation: .settle(id: id, attempts: attempts, reason: reason?.name), done: nil))
    }

    public func release(_ ids: [UInt64], done: @escaping @Sendable (BusError?) -> Void) {
        submit(Write(operation: .release(ids: ids), done: done))
    }

    public func deadLetter(_ message: StoredMessage, reason: ErrorCode) {
        submit(Write(operation: .deadLetter(message, reason: reason.name), done: nil))
    }

    public func saveAgent(
        _ key: AgentKey, _ description: AgentDescription?, done: @escaping @Sendable (BusError?) -> Void
    ) {
        submit(
            Write(
                operation: .saveAgent(
                    tenant: key.tenant, agentID: key.agentID, description: description.map(AgentRecord.init)),
                done: done))
    }

    public func backlog(
        of agent: AgentKey, resuming: Bool, limit: Int,
        done: @escaping @Sendable (Result<[StoredMessage], BusError>) -> Void
    ) {
        let accepted = state.withLockedValue { state in
            guard !state.closed else { return false }
            state.reads.append(Read(agent: agent, resuming: resuming, limit: limit, done: done))
            return true
        }
        guard accepted else { return done(.failure(Self.unavailable("the store is closed"))) }
        workers[0].wake()
    }

    /// Applies or spools what is queued, then stops the thread. Blocks until done.
    public func close() {
        state.withLockedValue { $0.closed = true }
        for worker in workers { worker.stop() }
        for worker in workers { worker.join() }
    }

    private func submit(_ write: Write) {
        let (accepted, writer) = state.withLockedValue { state in
            // Writes nobody waits for (settlements, dead letters) get twice the room of those that
            // can be refused and retried.
            let scale = write.done == nil ? 2 : 1
            guard !state.closed, state.writes.count < scale * settings.queueCapacity,
                state.bytes + write.bytes <= scale * settings.queueBytes
            else {
                if write.done == nil { state.dropped += 1 }
                return (false, nil as Int?)
            }
            state.writes.append(write)
            state.bytes += write.bytes
            return (true, state.idleWriter(spoolIsEmpty: spool.isEmpty))
        }
        guard accepted else {
            if let done = write.done {
                done(Self.unavailable("the store's queue is full"))
            } else {
                logger.error("store queue full: a write was dropped", metadata: ["operation": "\(write.operation)"])
            }
            return
        }
        if let writer { workers[writer].wake() }
    }

    /// A writer finished a batch: wakes the one that should take what is queued.
    private func finished(_ writer: Int) {
        let (next, fenced) = state.withLockedValue { state in
            state.busy[writer] = false
            return (state.idleWriter(spoolIsEmpty: spool.isEmpty), state.fenced)
        }
        if let next { workers[next].wake() }
        if fenced, writer != 0 { workers[0].wake() }
    }

    private static func unavailable(_ why: String) -> BusError {
        BusError(.storageUnavailable, "durable storage is unavailable: \(why)", retryAfterMs: 1_000)
    }

    // MARK: - The store's thread

    /// The first writer's loop: batches of every kind, the spool, reads and sweeps.
    private func run() throws {
        let worker = workers[0]
        var link = SidecarLink<PostgresConnection>(name: "PostgreSQL", meanwhile: "writes are spooled")
        var lastSweep: UInt64 = 0
        while true {
            worker.sleep(seconds: 0.25)
            try worker.checkpoint()
            let (writes, reads, closed) = state.withLockedValue { state in
                let writes = state.take(settings.maxBatch)
                if !state.writes.isEmpty { worker.wake() }
                state.busy[0] = true
                defer { state.reads.removeAll() }
                return (writes, state.reads, state.closed && state.writes.isEmpty)
            }
            defer { finished(0) }
            if !spool.isEmpty || !reads.isEmpty || writes.contains(where: \.operation.needsOrder) { fence() }
            defer { state.withLockedValue { $0.fenced = false } }
            let now = MonotonicClock.nowMs()
            // The spool goes first: what it holds is older than this batch.
            if let live = link.live(now: now, logger: logger, connect: connect)?.connection, !spool.isEmpty,
                !replaySpool(on: live)
            {
                link.lost()
            }
            if let live = link.connection, spool.isEmpty {
                if !applyDirectly(writes, on: live) { link.lost() }
            } else {
                toSpool(writes)
            }
            for read in reads {
                guard let live = link.connection, spool.isEmpty else {
                    read.done(.failure(Self.unavailable("PostgreSQL is unreachable")))
                    continue
                }
                do throws(SidecarError) {
                    read.done(
                        .success(
                            try live.backlog(
                                of: read.agent, resuming: read.resuming, limit: read.limit, leaseMs: settings.leaseMs)))
                } catch {
                    if error.connectionLost { link.lost() }
                    read.done(.failure(Self.unavailable(error.message)))
                }
            }
            if let live = link.connection, spool.isEmpty, now >= lastSweep + settings.sweepMs {
                lastSweep = now
                do throws(SidecarError) {
                    let events = try live.expireBacklog(now: WallClock.nowMs(), leaseMs: settings.leaseMs)
                    audit?(events)
                    try prune(on: live)
                } catch {
                    if error.connectionLost { link.lost() }
                }
            }
            state.withLockedValue { $0.connected = link.isConnected }
            if closed, !link.isConnected || spool.isEmpty { break }
        }
    }

    /// Deletes settled messages past their retention: batches of ``Settings/pruneBatch`` for at most
    /// 100 ms, so the writer is back to its queue soon; what is left waits for the next sweep.
    private func prune(on connection: PostgresConnection) throws(SidecarError) {
        guard settings.retentionMs > 0 else { return }
        let started = MonotonicClock.nowMs()
        let before = WallClock.nowMs() - settings.retentionMs
        while try connection.pruneSettled(before: before, limit: settings.pruneBatch) == settings.pruneBatch,
            MonotonicClock.nowMs() < started + 100
        {}
    }

    /// The first writer waits until no other has a batch in flight; they take nothing new until its
    /// round ends.
    private func fence() {
        while state.withLockedValue({ state in
            state.fenced = true
            return state.busy.dropFirst().contains(true)
        }) {
            workers[0].sleep(seconds: 0.01)
        }
    }

    /// Another writer's loop: enqueues and settlements, beside the first writer, while it is
    /// connected, the spool is empty and it is not fenced. A batch that fails is spooled, as the
    /// first writer's is; the first then replays it.
    private func help(_ writer: Int) throws {
        let worker = workers[writer]
        var link = SidecarLink<PostgresConnection>(name: "PostgreSQL", meanwhile: "the first writer takes the batches")
        while true {
            worker.sleep(seconds: 0.25)
            try worker.checkpoint()
            guard state.withLockedValue({ $0.connected }),
                let live = link.live(now: MonotonicClock.nowMs(), logger: logger, connect: connect)?.connection
            else {
                if state.withLockedValue({ $0.closed }) { break }
                continue
            }
            let (writes, closed) = state.withLockedValue { state in
                // Checked under the lock: a settlement taken now came after its enqueue was spooled.
                guard !state.fenced, state.connected, spool.isEmpty else { return ([Write](), state.closed) }
                let writes = state.take(settings.maxBatch) { !$0.needsOrder }
                state.busy[writer] = !writes.isEmpty
                return (writes, state.closed)
            }
            guard !writes.isEmpty else {
                if closed { break }
                continue
            }
            if !applyDirectly(writes, on: live) { link.lost() }
            finished(writer)
        }
    }

    private func connect() throws(SidecarError) -> PostgresConnection {
        let connection = try PostgresConnection(url: settings.url)
        try Self.checkSchema(connection)
        return connection
    }

    /// One transaction for the batch. - Returns: false if the connection was lost (the batch was spooled).
    private func applyDirectly(_ writes: [Write], on connection: PostgresConnection) -> Bool {
        guard !writes.isEmpty else { return true }
        do throws(SidecarError) {
            try apply(writes.map(\.operation), on: connection)
            state.withLockedValue { $0.batches += 1 }
            for write in writes { write.done?(nil) }
            return true
        } catch  where !error.isPermanent {
            // Lost, or refused for now (a serialization failure, a full disk, a shutdown): spooled,
            // and applied after reconnecting. It may have committed before the connection went:
            // replaying skips messages already stored, and settlements are idempotent.
            logger.warning("PostgreSQL failed a batch, spooling writes", metadata: ["error": "\(error.message)"])
            toSpool(writes)
            return false
        } catch {
            // One bad write must not sink the others: apply them one by one.
            for (index, write) in writes.enumerated() {
                do throws(SidecarError) {
                    try apply([write.operation], on: connection)
                    write.done?(nil)
                } catch  where !error.isPermanent {
                    toSpool(Array(writes[index...]))
                    return false
                } catch {
                    logger.error("PostgreSQL refused a write", metadata: ["error": "\(error.message)"])
                    write.done?(BusError(.internal, "storing failed: \(error.message)"))
                }
            }
            return true
        }
    }

    /// One transaction of `operations`, its audit events to ``audit``.
    private func apply(_ operations: [StoreOperation], on connection: PostgresConnection, replaying: Bool = false)
        throws(SidecarError)
    {
        let events = try connection.apply(
            operations, now: WallClock.nowMs(), replaying: replaying, auditing: audit != nil)
        audit?(events)
    }

    private func toSpool(_ writes: [Write]) {
        guard !writes.isEmpty else { return }
        do {
            try spool.append(json: writes.map(\.operation))
            for write in writes { write.done?(nil) }
        } catch {
            let full = error is Journal.Full
            logger.error(
                full ? "store spool full: writes refused" : "store spool failed", metadata: ["error": "\(error)"])
            state.withLockedValue { $0.dropped += writes.filter { $0.done == nil }.count }
            for write in writes { write.done?(Self.unavailable(full ? "the spool is full" : "the spool failed")) }
        }
    }

    /// Applies the spool in order, a batch per transaction, committing the spool only past what
    /// PostgreSQL took. - Returns: false if PostgreSQL was lost or refused for now (try later).
    private func replaySpool(on connection: PostgresConnection) -> Bool {
        var failed = false
        let emptied = spool.replay(StoreOperation.self) { records in
            do throws(SidecarError) {
                try apply(records.compactMap(\.value), on: connection, replaying: true)
                return records.last?.next
            } catch  where !error.isPermanent {
                failed = true
                return nil
            } catch {
                // A write PostgreSQL will never take must not hold back the rest: one by one, logging
                // and skipping what it refuses for good, stopping (and keeping the rest) otherwise.
                var reached: Journal.Position?
                for (operation, next) in records {
                    do throws(SidecarError) {
                        guard let operation else {
                            throw SidecarError(message: "unreadable", connectionLost: false, sqlState: "22000")
                        }
                        try apply([operation], on: connection, replaying: true)
                    } catch  where !error.isPermanent {
                        failed = true
                        return reached
                    } catch {
                        logger.error(
                            "PostgreSQL refused a spooled write for good; skipped",
                            metadata: [
                                "operation": "\(operation.map { "\($0)" } ?? "unreadable")", "error": "\(error)",
                            ])
                    }
                    reached = next
                }
                return reached
            }
        }
        if emptied { logger.info("spool applied to PostgreSQL") }
        return !failed
    }
}
