public import Bus
import Foundation
public import Logging
import NIOConcurrencyHelpers

/// The audit stream: every audit event becomes one JSON record (``AuditRecord``, docs/audit.md) on
/// the Kafka topic `acb.<tenant>.audit`, keyed by agent id.
///
/// ``record(_:)`` appends the record to a ``Journal`` with one write (so it survives `kill -9` of
/// the bus once the call returns) and never waits for Kafka. A relay thread produces the journal
/// to Kafka in order and commits the journal as deliveries are confirmed; after a restart, or
/// after a delivery failed, it produces again from the first unconfirmed record (at least once:
/// consumers drop duplicates by the record's `id`). While the broker is unreachable the journal
/// holds the events, up to ``Settings/journalBytes``; beyond that new events are dropped, counted
/// in ``dropped`` and logged (durable sends are refused by then: see `PostgresStore`).
public final class AuditStream: Sendable {
    /// Where the stream goes and how much it may hold back.
    public struct Settings: Sendable {
        /// Kafka bootstrap servers, `host:port[,…]`.
        public var brokers: String
        /// Where events wait until the broker confirms them.
        public var journalDirectory: String
        /// Most bytes the journal may hold.
        public var journalBytes = 1 << 30
        /// Further librdkafka settings (e.g. `security.protocol`).
        public var producerOptions: [String: String] = [:]

        public init(brokers: String, journalDirectory: String) {
            self.brokers = brokers
            self.journalDirectory = journalDirectory
        }
    }

    private struct Status {
        var closed = false
        var dropped = 0
        var delivered = 0
    }

    public let settings: Settings
    private let journal: Journal
    private let status = NIOLockedValueBox(Status())
    private let worker = WorkerThread(name: "audit-stream")
    private let logger: Logger
    /// librdkafka's own lines: ten a second while the broker is down, so at most one a second.
    private let kafkaLog: RateLimitedLog
    /// Makes record ids unique across runs: the start time, in ms.
    private let runID = WallClock.nowMs()
    private let nextID = NIOLockedValueBox<UInt64>(0)

    /// Opens the journal and starts the relay; the producer connects by itself, retrying.
    public init(settings: Settings, logger: Logger) throws(SidecarError) {
        self.settings = settings
        self.logger = logger
        self.kafkaLog = RateLimitedLog(logger: logger)
        self.journal = try Journal(directory: settings.journalDirectory, capacity: settings.journalBytes)
        worker.start(logger: logger) { [self] in try relay() }
    }

    /// Journals one event. Never waits for Kafka.
    public func record(_ event: AuditEvent) { record([event]) }

    /// Journals events with one write, in order.
    public func record(_ events: [AuditEvent]) {
        guard !events.isEmpty else { return }
        let first = nextID.withLockedValue { next in
            defer { next += UInt64(events.count) }
            return next
        }
        let records = events.enumerated().map { index, event in
            AuditRecord.journalEntry(event, id: "\(runID)-\(first + UInt64(index))")
        }
        do {
            try journal.append(records)
            worker.wake()
        } catch {
            let dropped = status.withLockedValue { status in
                status.dropped += events.count
                return status.dropped
            }
            // Once per thousand, so a full journal does not flood the log.
            if dropped % 1000 < events.count {
                logger.error(
                    "audit journal full or failing: events dropped",
                    metadata: ["dropped": "\(dropped)", "error": "\(error)"])
            }
        }
    }

    /// Events dropped because the journal was full.
    public var dropped: Int { status.withLockedValue { $0.dropped } }

    /// Records confirmed by the broker since start.
    public var delivered: Int { status.withLockedValue { $0.delivered } }

    /// Whether the journal is (nearly) full, so events are about to be dropped: the bus then
    /// refuses durable sends, whose audit events would be lost.
    public var isFull: Bool { journal.freeBytes < min(1 << 20, settings.journalBytes / 16) }

    /// Bytes of events journaled and not yet confirmed by the broker.
    public var pendingBytes: Int { journal.pendingBytes }

    /// Its thread as a supervised child (/readyz, /metrics).
    public var child: ChildStatus { worker.status }

    /// Gives the relay up to `timeoutMs` to deliver what is journaled, then stops it. What is not
    /// confirmed stays in the journal for the next start.
    public func close(timeoutMs: UInt64 = 5_000) {
        let deadline = MonotonicClock.nowMs() + timeoutMs
        while !journal.isEmpty, MonotonicClock.nowMs() < deadline { usleep(10_000) }
        status.withLockedValue { $0.closed = true }
        worker.stop()
        worker.join()
    }

    // MARK: - The relay thread

    /// Records handed to the producer and not yet confirmed, in journal order.
    private final class InFlight {
        var entries = [(sequence: UInt64, next: Journal.Position, confirmed: Bool)]()
        var head = 0
        var failure: String?
        var confirmedCount = 0

        func confirm(_ sequence: UInt64, _ error: String?) {
            guard let first = entries[safe: head]?.sequence, sequence >= first else { return }
            let index = head + Int(sequence - first)
            guard index < entries.count else { return }
            if let error {
                failure = failure ?? error
            } else {
                entries[index].confirmed = true
                confirmedCount += 1
            }
        }

        /// The position after the longest confirmed prefix, if it grew.
        func advance() -> Journal.Position? {
            var position: Journal.Position?
            while head < entries.count, entries[head].confirmed {
                position = entries[head].next
                head += 1
            }
            if head > 4096, head * 2 > entries.count {
                entries.removeFirst(head)
                head = 0
            }
            return position
        }

        var isEmpty: Bool { head == entries.count }
    }

    private func relay() throws {
        var producer: KafkaProducer?
        let inFlight = InFlight()
        var sequence: UInt64 = 0
        var reading = journal.committed
        var lastCommit = MonotonicClock.nowMs()
        while !status.withLockedValue({ $0.closed }) {
            try worker.checkpoint()
            if producer == nil {
                do throws(SidecarError) {
                    producer = try KafkaProducer(
                        brokers: settings.brokers, options: settings.producerOptions, log: kafkaLog,
                        delivered: inFlight.confirm)
                } catch {
                    logger.error("cannot create the audit producer", metadata: ["error": "\(error)"])
                    Thread.sleep(forTimeInterval: 1)
                    continue
                }
            }
            guard let live = producer else { continue }
            // librdkafka holds at most this many: beyond, wait for confirmations instead of reading.
            var full = live.queued >= 50_000
            records: for entry in full ? [] : journal.read(from: reading, maxBytes: 256 << 10) {
                guard let (topic, key, value) = AuditRecord.parseJournalEntry(entry.record) else {
                    reading = entry.next  // unreadable: skipped, and confirmed with the next good one
                    continue
                }
                do throws(SidecarError) {
                    guard try live.produce(topic: topic, key: key, value: value, sequence: sequence + 1) else {
                        full = true  // its queue is full: this record again next round
                        break records
                    }
                } catch {
                    inFlight.failure = error.message
                    break records
                }
                sequence += 1
                inFlight.entries.append((sequence, entry.next, false))
                reading = entry.next
                if live.queued >= 50_000 {
                    full = true
                    break records
                }
            }
            live.poll(timeoutMs: full ? 50 : 0)
            if let failure = inFlight.failure {
                // Start over from the first unconfirmed record with a new producer: order is kept
                // and nothing is skipped (records confirmed twice are duplicates, not losses).
                logger.warning(
                    "audit delivery failed, producing again from the journal", metadata: ["error": "\(failure)"])
                producer = nil
                inFlight.entries.removeAll()
                inFlight.head = 0
                inFlight.confirmedCount = 0
                inFlight.failure = nil
                reading = journal.committed
                usleep(500_000)
                continue
            }
            if let position = inFlight.advance() {
                let confirmed = inFlight.confirmedCount
                inFlight.confirmedCount = 0
                status.withLockedValue { $0.delivered += confirmed }
                // The cursor file is rewritten at most every 50 ms, or at once when all caught up.
                let now = MonotonicClock.nowMs()
                if now >= lastCommit + 50 || inFlight.isEmpty {
                    journal.commit(through: position)
                    lastCommit = now
                }
            }
            if !full, reading == journal.end {
                // Caught up: wait for new events (or delivery reports, served by poll).
                worker.sleep(seconds: inFlight.isEmpty ? 0.2 : 0.005)
                live.poll(timeoutMs: inFlight.isEmpty ? 0 : 5)
            }
        }
        if let producer {
            _ = producer.flush(timeoutMs: 2_000)
            if let position = inFlight.advance() { journal.commit(through: position) }
        }
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
