public import Bus
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore

/// This process as a node of a cluster (docs/cluster.md): the directory and membership in Redis
/// (``ClusterDirectory``), and traffic to and from the other nodes over Kafka, one topic per node
/// (`acb-cluster.<cluster>.<node>`, one partition: what a node sends another arrives in order).
///
/// Three supervised threads: `cluster-directory` (Redis), `cluster-out` (the producer) and
/// `cluster-in` (the consumer of this node's topic). Records to send wait in a bounded queue; a
/// full one refuses at once with `overloaded`.
public final class ClusterNode: Sendable {
    public struct Settings: Sendable {
        /// The cluster's name: nodes with the same sidecars and name form one cluster.
        public var cluster: String
        public var nodeID: String
        public var redisURL: String
        public var brokers: String
        /// Records waiting to be handed to Kafka; one more is refused with `overloaded` (credit
        /// returns excepted, see ``returnCredit(_:to:of:on:)``).
        public var outboundCapacity = 100_000
        /// A node not heard from for this long is gone (its agents' entries are ignored).
        public var nodeTTLMs: UInt64 = 3_000

        public init(cluster: String, nodeID: String, redisURL: String, brokers: String) {
            self.cluster = cluster
            self.nodeID = nodeID
            self.redisURL = redisURL
            self.brokers = brokers
        }
    }

    private struct Outbound {
        var records: [(topic: String, record: ClusterRecord, done: @Sendable (BusError?) -> Void)] = []
        var stopping = false
    }

    public let settings: Settings
    public var name: String { settings.cluster }
    public var nodeID: String { settings.nodeID }
    public var idSlot: UInt64 { directory.slot }
    let directory: ClusterDirectory
    private let outbound = NIOLockedValueBox(Outbound())
    private let sender = WorkerThread(name: "cluster-out")
    private let receiver = WorkerThread(name: "cluster-in")
    private let logger: Logger
    private let log: RateLimitedLog

    /// The threads' statuses, for /readyz and /metrics.
    public var children: [ChildStatus] { [directory.thread.status, sender.status, receiver.status] }

    /// Joins the cluster's directory (claims an id slot) and starts the directory's and the
    /// sender's threads; ``start(inbox:)`` starts taking records.
    /// - Throws: when Redis cannot be reached, or a live node has this id.
    public init(settings: Settings, logger: Logger) throws(SidecarError) {
        guard Self.isValidName(settings.cluster), Self.isValidName(settings.nodeID) else {
            throw SidecarError(
                message: "cluster names and node ids are 1-64 letters, digits, '.', '_' or '-'", connectionLost: false)
        }
        self.settings = settings
        self.logger = logger
        self.log = RateLimitedLog(logger: logger)
        var directorySettings = ClusterDirectory.Settings(
            redisURL: settings.redisURL, cluster: settings.cluster, nodeID: settings.nodeID)
        directorySettings.nodeTTLMs = settings.nodeTTLMs
        directory = try ClusterDirectory(settings: directorySettings)
        directory.start(logger: logger)
        sender.start(logger: logger) { [self] in try send() }
    }

    /// A node id made up at start, when none is given.
    public static func generatedNodeID() -> String {
        "node-" + String(UInt32.random(in: .min ... .max), radix: 16)
    }

    private static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0))
            }
    }

    private func topic(of node: String) -> String { "acb-cluster.\(settings.cluster).\(node)" }

    public func node(of key: AgentKey) -> String? { directory.node(of: key) }

    public func nodes(withMembersOf tenant: String) -> [String] { directory.nodes(withMembersOf: tenant) }

    public var otherNodes: [String] { directory.liveNodes.subtracting([nodeID]).sorted() }

    public func attached(_ key: AgentKey, at: UInt64, done: @escaping @Sendable () -> Void) {
        directory.attach(
            key,
            holders: { [self] holders in
                for holder in holders.sorted() {
                    forward(
                        ClusterRecord(kind: .takeover, node: nodeID, tenant: key.tenant, to: key.agentID, at: at),
                        to: holder
                    ) { _ in }
                }
            }, done: done)
    }

    public func detached(_ key: AgentKey, holdingMs: UInt64) { directory.detach(key, holdMs: holdingMs) }

    public func forward(_ record: ClusterRecord, to node: String, done: @escaping @Sendable (BusError?) -> Void) {
        guard queue(record, to: node, bounded: true, done: done) else {
            return done(BusError(.overloaded, "too many records waiting for the other nodes", retryAfterMs: 100))
        }
    }

    public func returnCredit(_ count: Int, to number: UInt32, of tenant: String, on node: String) {
        let record = ClusterRecord(
            kind: .credit, node: nodeID, tenant: tenant, correlationID: UInt64(number), count: UInt32(clamping: count))
        _ = queue(record, to: node, bounded: false) { _ in }
    }

    /// Queues `record` for `node` and wakes `cluster-out`; false when this node is stopping or,
    /// `bounded`, the outbound queue is full.
    private func queue(
        _ record: ClusterRecord, to node: String, bounded: Bool, done: @escaping @Sendable (BusError?) -> Void
    ) -> Bool {
        let accepted = outbound.withLockedValue { outbound in
            guard !bounded || outbound.records.count < settings.outboundCapacity, !outbound.stopping else {
                return false
            }
            outbound.records.append((topic(of: node), record, done))
            return true
        }
        if accepted { sender.wake() }
        return accepted
    }

    public func lookup(_ key: AgentKey, then: @escaping @Sendable (String?) -> Void) {
        directory.lookup(key) { [self] node in then(node == nodeID ? nil : node) }
    }

    public func stored(for key: AgentKey) {
        lookup(key) { [self] node in
            guard let node else { return }
            forward(ClusterRecord(kind: .backlog, node: nodeID, tenant: key.tenant, to: key.agentID), to: node) { _ in }
        }
    }

    public var members: [ClusterMember] { directory.members }

    public func contextHome(of tenant: String) -> String? { directory.contextHome(of: tenant) }

    public func sharedIdempotencyKey(
        _ scopedKey: String, then: @escaping @Sendable ((result: String, ttlMs: UInt64)?) -> Void
    ) {
        directory.sharedIdempotencyKey(scopedKey, then: then)
    }

    public func claimContexts(of tenant: String, then: @escaping @Sendable (String?) -> Void) {
        directory.claimContexts(of: tenant, then: then)
    }

    public func remoteLoad(of key: AgentKey) -> ReportedLoad? { directory.remoteLoad(of: key) }

    public func start(
        inbox: @escaping @Sendable (ClusterRecord) -> Void, load: @escaping @Sendable () -> ClusterMember.Load,
        capable: @escaping @Sendable () -> [AgentKey: ReportedLoad]
    ) {
        directory.report(load, capable: capable)
        let ready = ConditionLock(value: 0)
        receiver.start(logger: logger) { [self] in
            let consumer = try KafkaConsumer(brokers: settings.brokers, topic: topic(of: nodeID), log: log)
            ready.lock()
            ready.unlock(withValue: 1)
            while !outbound.withLockedValue(\.stopping) {
                try receiver.checkpoint()
                try consumer.poll(limit: 1_000, timeoutMs: 100) { value in
                    do throws(BusError) {
                        for record in try ClusterRecord.decodeAll(value) { inbox(record) }
                    } catch {
                        log.log(level: .error, "a cluster record could not be read", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
        // Other nodes send here once the directory names this node: the consumer is there first.
        _ = ready.lock(whenValue: 1, timeoutSeconds: 10)
        ready.unlock()
        // Every other node reads the directory every refresh: two of them after the announcement,
        // each knows this node, and sends it what it sends every node (committed context versions).
        let known = directory.announcedAt + 2 * directory.settings.refreshMs + 100
        let now = MonotonicClock.nowMs()
        if now < known { Thread.sleep(forTimeInterval: Double(known - now) / 1_000) }
    }

    /// The sender's loop: hands queued records to Kafka and their delivery reports to their senders.
    private func send() throws {
        final class Waiting {
            var next: UInt64 = 0
            var done: [UInt64: [@Sendable (BusError?) -> Void]] = [:]
        }
        let waiting = Waiting()
        let producer = try KafkaProducer(
            brokers: settings.brokers,
            options: [
                "linger.ms": "0", "compression.type": "lz4", "socket.nagle.disable": "true",
                "message.timeout.ms": "5000",
                // A record carries at most one context body (64 MiB) and a little more.
                "message.max.bytes": "\(KafkaConsumer.maxRecordBytes)",
            ],
            log: log
        ) { sequence, failure in
            let error = failure.map {
                BusError(.unavailable, "the other node cannot be reached through Kafka: \($0)", retryAfterMs: 1_000)
            }
            for done in waiting.done.removeValue(forKey: sequence) ?? [] { done(error) }
        }
        defer {
            // What librdkafka still holds when the thread ends or restarts is failed: its senders hear it.
            _ = producer.flush(timeoutMs: 5_000)
            for done in waiting.done.values.joined() { done(BusError(.unavailable, "the cluster link restarted")) }
        }
        while true {
            try sender.checkpoint()
            let (records, stopping) = outbound.withLockedValue { outbound in
                defer { outbound.records.removeAll(keepingCapacity: true) }
                return (outbound.records, outbound.stopping)
            }
            for batch in Self.packed(records) {
                waiting.next += 1
                waiting.done[waiting.next] = batch.done
                do {
                    while try !batch.value.withUnsafeReadableBytes({ value throws(SidecarError) in
                        try producer.produce(
                            topic: batch.topic, partition: 0, key: [], value: value, sequence: waiting.next)
                    }) {
                        producer.poll(timeoutMs: 10)
                    }
                } catch {
                    for done in waiting.done.removeValue(forKey: waiting.next) ?? [] {
                        done(BusError(.unavailable, "\(error)"))
                    }
                }
            }
            producer.poll(timeoutMs: 0)
            if stopping && records.isEmpty { return }
            if producer.queued > 0 {
                producer.poll(timeoutMs: 1)
            } else {
                sender.sleep(seconds: 0.1)
            }
        }
    }

    /// Most bytes of records packed into one Kafka record; a larger record goes alone.
    static let batchBytes = 256 << 10

    /// `records` packed per topic, in order, into Kafka values of at most about ``batchBytes``
    /// (``ClusterRecord/encode(into:)``), each with the completions of the records it carries: one
    /// Kafka record for many saves the broker and librdkafka their work per record.
    private static func packed(_ records: [(topic: String, record: ClusterRecord, done: @Sendable (BusError?) -> Void)])
        -> [(topic: String, value: ByteBuffer, done: [@Sendable (BusError?) -> Void])]
    {
        var batches: [(topic: String, value: ByteBuffer, done: [@Sendable (BusError?) -> Void])] = []
        var filling: [String: Int] = [:]
        for (topic, record, done) in records {
            // The record's bytes beyond its payload are a few hundred at most.
            if let index = filling[topic],
                batches[index].value.readableBytes + record.payload.readableBytes < batchBytes
            {
                record.encode(into: &batches[index].value)
                batches[index].done.append(done)
            } else {
                var value = ByteBuffer()
                record.encode(into: &value)
                filling[topic] = batches.count
                batches.append((topic, value, [done]))
            }
        }
        return batches
    }

    /// Leaves the cluster: what is queued is sent, the directory forgets this node.
    public func close() {
        outbound.withLockedValue { $0.stopping = true }
        sender.stop()
        receiver.stop()
        sender.join()
        receiver.join()
        directory.stop()
    }
}
