import NIOCore

/// Increments one counter context (``ContextStamp/counter(_:)``) by compare-and-swap: gets it,
/// writes the value + 1 expecting the version it read, and on `version_conflict` (another writer
/// got there first) gets it again and retries.
///
/// Each increment is timed from its first get to its commit, retries included. Any other refusal
/// stops the writer: retrying it would only spin.
final class CounterWriter: Behaviour {
    private enum Step: Equatable {
        case idle, reading, writing
    }

    private let key: ContextKey
    private let limit: UInt64
    private var step = Step.idle
    /// Increments the server committed.
    private(set) var increments: UInt64 = 0
    /// Writes refused because the counter had moved on since it was read.
    private(set) var conflicts: UInt64 = 0
    /// Other refusals (and reads that did not hold a counter), by code.
    private(set) var refused: [String: UInt64] = [:]
    private(set) var latency = LatencyRecorder()
    /// When the last increment was committed, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0
    private weak var outbox: (any Outbox)?
    private var running = false
    /// When the increment under way sent its first get.
    private var startedAt: UInt64 = 0

    init(key: ContextKey, limit: UInt64) {
        self.key = key
        self.limit = limit
    }

    func attached(_ outbox: any Outbox) { self.outbox = outbox }

    func start() {
        running = true
        begin()
        outbox?.flush()
    }

    /// Made its share of increments (count mode).
    var isDone: Bool { increments >= limit }

    /// Stopped, with no get or write unanswered: every increment it made is counted.
    var isIdle: Bool { !running && step == .idle }

    /// Starts no new get; a write under way is still counted when it is answered.
    func stop() { running = false }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch (step, event) {
        case (.reading, .value(let version, let body)):
            guard let value = ContextStamp.counterValue(body) else { return fail("not_a_counter") }
            step = .writing
            outbox.context(.put(key, ContextStamp.counter(value + 1), expected: version))
        case (.writing, .committed):
            increments += 1
            lastArrival = Stamp.now()
            latency.record(nanoseconds: lastArrival &- startedAt)
            step = .idle
            if running && increments < limit { begin() }
        case (.writing, .refused("version_conflict")):
            conflicts += 1
            step = .idle
            if running { read() }
        case (.reading, .refused(let code)), (.writing, .refused(let code)), (_, .closed(let code)):
            fail(code)
        default: return
        }
    }

    private func begin() {
        startedAt = Stamp.now()
        read()
    }

    private func read() {
        guard let outbox else { return }
        step = .reading
        outbox.context(.get(key))
    }

    private func fail(_ code: String) {
        refused[code, default: 0] += 1
        running = false
        step = .idle
    }
}
