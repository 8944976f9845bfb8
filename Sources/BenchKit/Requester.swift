import NIOCore

/// Makes requests to one responder and times each until its reply.
///
/// Closed loop keeps one request in flight. Open loop sends on a fixed schedule whatever the
/// replies do, and times each request from when it was due, so a stall shows in the latency
/// instead of hiding in a slower send rate (no coordinated omission).
final class Requester: Behaviour {
    /// How requests are paced.
    enum Pace: Sendable {
        case closedLoop
        case openLoop(perSecond: Double)
    }

    /// Most requests in flight in open loop; a due request beyond it is counted as skipped.
    static let maxOutstanding: UInt64 = 10_000

    private let responder: String
    private let pace: Pace
    private let limit: UInt64
    private var stamp: Stamp
    private(set) var counts = SendCounts()
    private(set) var tally = SequenceTally()
    private(set) var latency = LatencyRecorder()
    private(set) var skipped: UInt64 = 0
    /// When the last reply arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0
    private weak var outbox: (any Outbox)?
    private var running = false
    private var ticker: RepeatedTask?
    private var startNanos: UInt64 = 0

    init(responder: String, pace: Pace, limit: UInt64, payloadBytes: Int) {
        self.responder = responder
        self.pace = pace
        self.limit = limit
        self.stamp = Stamp(payloadBytes: payloadBytes)
    }

    func attached(_ outbox: any Outbox) { self.outbox = outbox }

    func start() {
        guard let outbox else { return }
        running = true
        startNanos = Stamp.now()
        switch pace {
        case .closedLoop:
            issue(due: Stamp.now())
            outbox.flush()
        case .openLoop:
            let this = NIOLoopBound(self, eventLoop: outbox.eventLoop)
            // Every 200 µs: a request waits at most that long past its due time in the harness.
            ticker = outbox.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .microseconds(200)) { _ in
                this.value.tick()
            }
        }
    }

    /// Every request was sent or skipped (count mode).
    var isDone: Bool { counts.sent + skipped >= limit }

    func stop() -> SendCounts {
        running = false
        ticker?.cancel()
        return counts
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch event {
        case .reply(let payload):
            guard let stamp = Stamp.read(payload) else { return }
            tally.record(stamp.sequence)
            lastArrival = Stamp.now()
            latency.record(nanoseconds: lastArrival &- stamp.nanos)
            counts.accepted += 1
        case .refused(let code): counts.refused[code, default: 0] += 1
        default: return
        }
        if case .closedLoop = pace, running { issue(due: Stamp.now()) }
    }

    /// Open loop: sends every request due by now, each stamped with the moment it was due.
    private func tick() {
        guard running, case .openLoop(let rate) = pace, let outbox else { return }
        let elapsed = Double(Stamp.now() - startNanos) / 1e9
        let due = min(limit, UInt64(elapsed * rate))
        while counts.sent + skipped < due {
            let dueNanos = startNanos + UInt64(Double(counts.sent + skipped) / rate * 1e9)
            if counts.unanswered >= Self.maxOutstanding {
                skipped += 1
            } else {
                issue(due: dueNanos)
            }
        }
        outbox.flush()
    }

    private func issue(due: UInt64) {
        guard counts.sent < limit, let outbox else { return }
        outbox.request(to: responder, stamp.payload(sequence: counts.sent, nanos: due))
        counts.sent += 1
    }
}
