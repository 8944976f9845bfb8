import NIOCore

/// Writes stamped JSON bodies (``ContextStamp``) to one context and times each write until the
/// server says it is committed: as many in flight as the window allows (`ctx-put`), or on a fixed
/// schedule (`ctx-watch`'s writer).
///
/// Both servers answer one connection's writes to one context in the order they were sent, so each
/// answer is timed against the oldest unanswered send.
final class ContextWriter: Behaviour {
    /// How writes are paced.
    enum Pace: Sendable {
        /// Up to `window` writes in flight, the next sent as each answer comes back.
        case pipelined(window: Int)
        /// `perSecond` writes on a fixed schedule whatever the answers do; a write that falls due
        /// while `window` are in flight is skipped and counted.
        case paced(perSecond: Double, window: Int)
    }

    private let key: ContextKey
    private let pace: Pace
    private let limit: UInt64
    private var stamp = ContextStamp()
    private(set) var counts = SendCounts()
    private(set) var latency = LatencyRecorder()
    private(set) var skipped: UInt64 = 0
    /// The lowest and highest versions the server said it committed; nil before the first.
    private(set) var committed: ClosedRange<UInt64>?
    /// When the last answer arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0
    /// When each unanswered write was sent, oldest first.
    private var sendTimes = CircularBuffer<UInt64>()
    private weak var outbox: (any Outbox)?
    private var running = false
    private var ticker: RepeatedTask?
    private var startNanos: UInt64 = 0

    init(key: ContextKey, pace: Pace, limit: UInt64) {
        self.key = key
        self.pace = pace
        self.limit = limit
    }

    func attached(_ outbox: any Outbox) { self.outbox = outbox }

    func start() {
        guard let outbox else { return }
        running = true
        startNanos = Stamp.now()
        switch pace {
        case .pipelined:
            pump()
            outbox.flush()
        case .paced:
            let this = NIOLoopBound(self, eventLoop: outbox.eventLoop)
            // Every 200 µs, as the open-loop requester: a write goes out at most that long after it is due.
            ticker = outbox.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .microseconds(200)) { _ in
                this.value.tick()
            }
        }
    }

    /// Every write was sent or skipped (count mode).
    var isDone: Bool { counts.sent + skipped >= limit }

    /// Stops writing; returns what was sent.
    func stop() -> SendCounts {
        running = false
        ticker?.cancel()
        return counts
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch event {
        case .committed(let version):
            counts.accepted += 1
            committed = min(version, committed?.lowerBound ?? version)...max(version, committed?.upperBound ?? version)
        case .refused(let code): counts.refused[code, default: 0] += 1
        default: return
        }
        lastArrival = Stamp.now()
        if let sent = sendTimes.popFirst() { latency.record(nanoseconds: lastArrival &- sent) }
        pump()
    }

    /// Fills the window; the connection flushes after the read batch that called it.
    private func pump() {
        guard running, case .pipelined(let window) = pace, let outbox else { return }
        while counts.sent < limit && counts.unanswered < UInt64(window) { write(to: outbox) }
    }

    private func tick() {
        guard running, case .paced(let rate, let window) = pace, let outbox else { return }
        let due = min(limit, UInt64(Double(Stamp.now() - startNanos) / 1e9 * rate))
        while counts.sent + skipped < due {
            if counts.unanswered >= UInt64(window) {
                skipped += 1
            } else {
                write(to: outbox)
            }
        }
        outbox.flush()
    }

    private func write(to outbox: any Outbox) {
        let now = Stamp.now()
        outbox.context(.put(key, stamp.body(sequence: counts.sent, nanos: now)))
        sendTimes.append(now)
        counts.sent += 1
    }
}
