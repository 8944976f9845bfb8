public import Bus
import Foundation
public import Logging
import NIOConcurrencyHelpers

/// Presence and idempotency keys in Redis, written by a thread of its own in pipelines. Conforms
/// to the bus's `SharedState` (see Gateway).
///
/// - Presence: `acb:presence:<tenant>/<agent>` exists while the agent is online, with a time to
///   live of ``Settings/presenceTTLMs``, refreshed each third of it for the agents the bus last
///   reported online (``online(_:)``), so a bus that dies leaves no agent online for longer.
/// - Idempotency: `acb:idem:<tenant>/<agent>/<key>` holds a command's result for the bus's
///   idempotency window; ``idempotencyKeys(url:)`` reads them back at start.
/// - Uploads: `acb:upload:<tenant>/<agent>/<stream id>` is a hash of `chunks`, `bytes` and
///   `total` stored so far, for as long as the upload can be resumed.
/// - Contexts: `acb:ctx:<tenant>/<id>` holds a small context's latest version, for readers outside
///   the bus (write-behind: the bus's `ContextService` is the authority, PostgreSQL the durable copy).
///
/// While Redis is unreachable, idempotency keys go to an on-disk spool (a ``Journal``) and are
/// written, in order, when it is back; presence and context mirrors are not spooled (the next
/// refresh, or the context's next write, rewrites them).
/// Full queue or spool: the write is dropped and counted in ``dropped`` (the running bus still
/// deduplicates from memory; only a restart during the outage forgets those keys).
public final class RedisState: Sendable {
    /// Where idempotency keys are kept: this, then `<tenant>/<agent>/<key>`.
    static let idempotencyPrefix = "acb:idem:"
    /// Where Redis is and how long presence lasts.
    public struct Settings: Sendable {
        /// `redis://host:port`.
        public var url: String
        /// Where idempotency keys are spooled while Redis is unreachable.
        public var spoolDirectory: String
        public var spoolBytes = 256 << 20
        public var presenceTTLMs: UInt64 = 15_000
        /// Most writes waiting in memory.
        public var queueCapacity = 65_536

        public init(url: String, spoolDirectory: String) {
            self.url = url
            self.spoolDirectory = spoolDirectory
        }
    }

    private enum Write {
        case presence(AgentKey, online: Bool)
        case durable([String])
        /// Not spooled: the next chunk rewrites it.
        case progress([[String]])
        /// Not spooled: the context's next write rewrites it.
        case mirror([String])
    }

    private struct State {
        var writes: [Write] = []
        var online: [AgentKey] = []
        var closed = false
        var connected = false
        var dropped = 0
        var batches = 0
    }

    public let settings: Settings
    private let state = NIOLockedValueBox(State())
    private let worker = WorkerThread(name: "redis")
    private let spool: Journal
    private let logger: Logger

    public init(settings: Settings, logger: Logger) throws(SidecarError) {
        self.settings = settings
        self.logger = logger
        self.spool = try Journal(directory: settings.spoolDirectory, capacity: settings.spoolBytes)
        worker.start(logger: logger) { [self] in try run() }
    }

    public var isConnected: Bool { state.withLockedValue { $0.connected } }
    public var dropped: Int { state.withLockedValue { $0.dropped } }
    /// Writes waiting for the Redis thread.
    public var queued: Int { state.withLockedValue { $0.writes.count } }
    /// Pipelines sent since start (each one a batch of commands).
    public var batches: Int { state.withLockedValue { $0.batches } }
    /// Bytes of writes spooled while Redis is unreachable.
    public var spooledBytes: Int { spool.pendingBytes }

    public func presence(_ key: AgentKey, online: Bool) {
        submit(.presence(key, online: online))
    }

    public func online(_ agents: [AgentKey]) {
        state.withLockedValue { $0.online = agents }
    }

    public func rememberIdempotencyKey(_ scopedKey: String, result: String, ttlMs: UInt64) {
        submit(.durable(["SET", Self.idempotencyPrefix + scopedKey, result, "PX", "\(max(ttlMs, 1))"]))
    }

    public func rememberToken(_ key: String, value: String, ttlMs: UInt64) {
        submit(.durable(["SET", "acb:token:\(key)", value, "PX", "\(max(ttlMs, 1))"]))
    }

    public func uploadProgress(
        _ agent: AgentKey, streamID: String, chunks: UInt32, bytes: UInt64, of total: UInt64, ttlMs: UInt64
    ) {
        let key = "acb:upload:\(agent)/\(streamID)"
        submit(
            .progress([
                ["HSET", key, "chunks", "\(chunks)", "bytes", "\(bytes)", "total", "\(total)"],
                ["PEXPIRE", key, "\(max(ttlMs, 1))"],
            ]))
    }

    /// Mirrors context `id` of `tenant`: `acb:ctx:<tenant>/<id>` is set to `value` (with a time to
    /// live of `ttlMs` when above 0), or deleted when `value` is nil. Queued like presence and, like
    /// it, lost rather than spooled while Redis is away: the mirror then lags the bus until the
    /// context's next write.
    public func mirrorContext(tenant: String, id: String, value: String?, ttlMs: UInt64) {
        let key = "acb:ctx:\(tenant)/\(id)"
        guard let value else { return submit(.mirror(["DEL", key])) }
        submit(.mirror(ttlMs > 0 ? ["SET", key, value, "PX", "\(ttlMs)"] : ["SET", key, value]))
    }

    /// What Redis mirrors of context `id` of `tenant` (see ``mirrorContext(tenant:id:value:ttlMs:)``),
    /// nil for nothing. For tests and tools.
    /// - Throws: when Redis cannot be reached.
    public static func context(url: String, tenant: String, id: String) throws(SidecarError) -> String? {
        let reply = try RedisConnection(url: url).command("GET", "acb:ctx:\(tenant)/\(id)")
        if case .error(let message) = reply { throw SidecarError(message: "Redis: \(message)", connectionLost: false) }
        return reply.text
    }

    /// The idempotency keys Redis holds: scoped key, result, and milliseconds left to live.
    /// - Throws: when Redis cannot be reached.
    public static func idempotencyKeys(url: String) throws(SidecarError) -> [(
        key: String, result: String, ttlMs: UInt64
    )] {
        try entries(url: url, prefix: idempotencyPrefix).map { ($0.key, $0.value, $0.ttlMs) }
    }

    /// The token states Redis holds (see ``rememberToken(_:value:ttlMs:)``).
    /// - Throws: when Redis cannot be reached.
    public static func tokenStates(url: String) throws(SidecarError) -> [(key: String, value: String, ttlMs: UInt64)] {
        try entries(url: url, prefix: "acb:token:")
    }

    /// How far an upload of `agent` is stored (see ``uploadProgress(_:streamID:chunks:bytes:of:ttlMs:)``):
    /// nil when Redis has no record of it (never opened, finished, or expired).
    /// - Throws: when Redis cannot be reached.
    public static func upload(url: String, of agent: AgentKey, streamID: String) throws(SidecarError) -> (
        chunks: UInt32, bytes: UInt64, total: UInt64
    )? {
        let connection = try RedisConnection(url: url)
        guard case .array(let fields) = try connection.command("HGETALL", "acb:upload:\(agent)/\(streamID)"),
            !fields.isEmpty
        else { return nil }
        var values: [String: String] = [:]
        for pair in stride(from: 0, to: fields.count - 1, by: 2) {
            if let name = fields[pair].text, let value = fields[pair + 1].text { values[name] = value }
        }
        guard let chunks = values["chunks"].flatMap(UInt32.init), let bytes = values["bytes"].flatMap(UInt64.init),
            let total = values["total"].flatMap(UInt64.init)
        else { throw SidecarError(message: "unexpected upload record in Redis", connectionLost: false) }
        return (chunks, bytes, total)
    }

    /// Every string key under `prefix` (without it), with its value and milliseconds left to live.
    private static func entries(url: String, prefix: String) throws(SidecarError) -> [(
        key: String, value: String, ttlMs: UInt64
    )] {
        let connection = try RedisConnection(url: url)
        var cursor = "0"
        var keys: [String] = []
        repeat {
            guard
                case .array(let page) = try connection.command("SCAN", cursor, "MATCH", "\(prefix)*", "COUNT", "1000"),
                page.count == 2, let next = page[0].text, case .array(let found) = page[1]
            else { throw SidecarError(message: "unexpected SCAN reply", connectionLost: false) }
            keys += found.compactMap(\.text)
            cursor = next
        } while cursor != "0"
        var entries: [(key: String, value: String, ttlMs: UInt64)] = []
        for chunk in keys.chunked(1_000) {
            let replies = try connection.pipeline(chunk.flatMap { [["GET", $0], ["PTTL", $0]] })
            for (index, key) in chunk.enumerated() {
                guard let result = replies[2 * index].text, case .integer(let ttl) = replies[2 * index + 1], ttl > 0
                else { continue }
                entries.append((String(key.dropFirst(prefix.count)), result, UInt64(ttl)))
            }
        }
        return entries
    }

    /// Its thread as a supervised child (/readyz, /metrics).
    public var child: ChildStatus { worker.status }

    /// Writes what is queued (or spools it), then stops the thread. Blocks until done.
    public func close() {
        state.withLockedValue { $0.closed = true }
        worker.stop()
        worker.join()
    }

    private func submit(_ write: Write) {
        let accepted = state.withLockedValue { state in
            guard !state.closed, state.writes.count < settings.queueCapacity else {
                state.dropped += 1
                return false
            }
            state.writes.append(write)
            return true
        }
        if accepted { worker.wake() }
    }

    // MARK: - The Redis thread

    private func run() throws {
        var link = SidecarLink<RedisConnection>(name: "Redis", meanwhile: "idempotency keys are spooled")
        var lastRefresh: UInt64 = 0
        while true {
            worker.sleep(seconds: 0.25)
            try worker.checkpoint()
            let (writes, closed) = state.withLockedValue { state in
                defer { state.writes.removeAll() }
                return (state.writes, state.closed)
            }
            let now = MonotonicClock.nowMs()
            var commands: [[String]] = []
            var spooled: [[String]] = []
            for write in writes {
                switch write {
                case .presence(let key, true):
                    commands.append(["SET", "acb:presence:\(key)", "online", "PX", "\(settings.presenceTTLMs)"])
                case .presence(let key, false): commands.append(["DEL", "acb:presence:\(key)"])
                case .durable(let command): spooled.append(command)
                case .progress(let progress): commands += progress
                case .mirror(let command): commands.append(command)
                }
            }
            let connected = link.live(now: now, logger: logger) { () throws(SidecarError) in
                try RedisConnection(url: settings.url)
            }
            if let connected {
                let live = connected.connection
                if connected.isNew { lastRefresh = 0 }
                do throws(SidecarError) {
                    try replaySpool(on: live)
                    if !spooled.isEmpty || !commands.isEmpty {
                        // A refusal (out of memory, a read-only replica) is not retried: it would be refused again.
                        for case .error(let message) in try live.pipeline(spooled + commands) {
                            logger.error("Redis refused a write", metadata: ["error": "\(message)"])
                        }
                        state.withLockedValue { $0.batches += 1 }
                    }
                    if now >= lastRefresh + settings.presenceTTLMs / 3 {
                        lastRefresh = now
                        let online = state.withLockedValue { $0.online }
                        for chunk in online.chunked(1_000) {
                            _ = try live.pipeline(
                                chunk.map {
                                    ["SET", "acb:presence:\($0)", "online", "PX", "\(settings.presenceTTLMs)"]
                                })
                        }
                    }
                } catch {
                    logger.warning("lost Redis: idempotency keys are spooled", metadata: ["error": "\(error.message)"])
                    link.lost()
                    toSpool(spooled)  // replayed whole when Redis is back: SET is idempotent
                }
            } else {
                toSpool(spooled)
            }
            state.withLockedValue { $0.connected = link.isConnected }
            if closed { break }
        }
    }

    private func toSpool(_ commands: [[String]]) {
        guard !commands.isEmpty else { return }
        do {
            try spool.append(json: commands)
        } catch {
            state.withLockedValue { $0.dropped += commands.count }
            logger.error("Redis spool full: idempotency keys dropped", metadata: ["count": "\(commands.count)"])
        }
    }

    private func replaySpool(on connection: RedisConnection) throws(SidecarError) {
        var failure: SidecarError?
        _ = spool.replay([String].self) { records in
            do throws(SidecarError) {
                _ = try connection.pipeline(records.compactMap(\.value))
                return records.last?.next
            } catch {
                failure = error
                return nil
            }
        }
        if let failure { throw failure }
    }
}
