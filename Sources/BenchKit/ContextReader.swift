import NIOCore

/// Gets one context over and over, one get in flight, and times each get until its answer.
final class ContextReader: Behaviour {
    private let key: ContextKey
    private let limit: UInt64
    private(set) var counts = SendCounts()
    private(set) var latency = LatencyRecorder()
    /// When the last answer arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0
    private weak var outbox: (any Outbox)?
    private var running = false
    private var sentAt: UInt64 = 0

    init(key: ContextKey, limit: UInt64) {
        self.key = key
        self.limit = limit
    }

    func attached(_ outbox: any Outbox) { self.outbox = outbox }

    func start() {
        running = true
        issue()
        outbox?.flush()
    }

    /// Every get was sent (count mode).
    var isDone: Bool { counts.sent >= limit }

    /// Stops getting; returns what was sent.
    func stop() -> SendCounts {
        running = false
        return counts
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch event {
        case .value: counts.accepted += 1
        case .refused(let code): counts.refused[code, default: 0] += 1
        default: return
        }
        lastArrival = Stamp.now()
        latency.record(nanoseconds: lastArrival &- sentAt)
        if running { issue() }
    }

    private func issue() {
        guard counts.sent < limit, let outbox else { return }
        sentAt = Stamp.now()
        outbox.context(.get(key))
        counts.sent += 1
    }
}
