public import Bus
import Foundation
public import Logging
import NIOConcurrencyHelpers

/// Durable storage on PostgreSQL: messages for offline agents, the registry (with its history in
/// `audit_log`) and dead letters. Conforms to the bus's `MessageStore` (see Gateway).
///
/// Callers never wait on PostgreSQL: operations go to a bounded queue that one thread of the store
/// applies in batches, one transaction per batch (group commit: a batch is what arrived while the
/// previous one committed, at most ``Settings/maxBatch``). An enqueue's completion runs once its
/// transaction has committed.
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
        /// How often stored messages past their expiry are dead-lettered, in ms.
        public var sweepMs: UInt64 = 1_000
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
    public static let schemaVersion = 4

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
        var closed = false
        var connected = false
        var dropped = 0
        var batches = 0
    }

    public let settings: Settings
    private let state = NIOLockedValueBox(State())
    private let worker = WorkerThread(name: "postgres")
    private let spool: Journal
    private let audit: @Sendable ([AuditEvent]) -> Void
    private let auditIsFull: @Sendable () -> Bool
    private let logger: Logger

    /// Opens the spool and starts the store's thread, which connects (and reconnects, with backoff) by itself.
    /// - Parameters:
    ///   - audit: receives the audit events of committed operations, from the store's thread.
    ///   - auditIsFull: whether the audit stream can take no more events: enqueues are then
    ///     refused, since their `message.queued` events would be lost.
    public init(
        settings: Settings, logger: Logger, audit: @escaping @Sendable ([AuditEvent]) -> Void,
        auditIsFull: @escaping @Sendable () -> Bool = { false }
    ) throws(SidecarError) {
        self.settings = settings
        self.logger = logger
        self.audit = audit
        self.auditIsFull = auditIsFull
        self.spool = try Journal(directory: settings.spoolDirectory, capacity: settings.spoolBytes)
        worker.start(logger: logger) { [self] in try run() }
    }

    /// Its thread as a supervised child (/readyz, /metrics).
    public var child: ChildStatus { worker.status }

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
        worker.wake()
    }

    /// Applies or spools what is queued, then stops the thread. Blocks until done.
    public func close() {
        state.withLockedValue { $0.closed = true }
        worker.stop()
        worker.join()
    }

    private func submit(_ write: Write) {
        let accepted = state.withLockedValue { state in
            // Writes nobody waits for (settlements, dead letters) get twice the room of those that
            // can be refused and retried.
            let scale = write.done == nil ? 2 : 1
            guard !state.closed, state.writes.count < scale * settings.queueCapacity,
                state.bytes + write.bytes <= scale * settings.queueBytes
            else {
                if write.done == nil { state.dropped += 1 }
                return false
            }
            state.writes.append(write)
            state.bytes += write.bytes
            return true
        }
        guard accepted else {
            if let done = write.done {
                done(Self.unavailable("the store's queue is full"))
            } else {
                logger.error("store queue full: a write was dropped", metadata: ["operation": "\(write.operation)"])
            }
            return
        }
        worker.wake()
    }

    private static func unavailable(_ why: String) -> BusError {
        BusError(.storageUnavailable, "durable storage is unavailable: \(why)", retryAfterMs: 1_000)
    }

    // MARK: - The store's thread

    private func run() throws {
        var link = SidecarLink<PostgresConnection>(name: "PostgreSQL", meanwhile: "writes are spooled")
        var lastSweep: UInt64 = 0
        while true {
            worker.sleep(seconds: 0.25)
            try worker.checkpoint()
            let (writes, reads, closed) = state.withLockedValue { state in
                let writes = Array(state.writes.prefix(settings.maxBatch))
                state.writes.removeFirst(writes.count)
                state.bytes -= writes.reduce(0) { $0 + $1.bytes }
                if !state.writes.isEmpty { worker.wake() }
                defer { state.reads.removeAll() }
                return (writes, state.reads, state.closed && state.writes.isEmpty)
            }
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
                    audit(try live.expireBacklog(now: WallClock.nowMs(), leaseMs: settings.leaseMs))
                } catch {
                    if error.connectionLost { link.lost() }
                }
            }
            state.withLockedValue { $0.connected = link.isConnected }
            if closed, !link.isConnected || spool.isEmpty { break }
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
            audit(try connection.apply(writes.map(\.operation), now: WallClock.nowMs()))
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
                    audit(try connection.apply([write.operation], now: WallClock.nowMs()))
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
                audit(try connection.apply(records.compactMap(\.value), now: WallClock.nowMs(), replaying: true))
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
                        audit(try connection.apply([operation], now: WallClock.nowMs(), replaying: true))
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
