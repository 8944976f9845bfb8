/// Gets one context over and over, one get in flight, and times each get until its answer.
final class ContextReader: PacedSender {
    private let key: ContextKey
    var loop: SendLoop
    private(set) var counts = SendCounts()
    private(set) var latency = LatencyRecorder()
    /// When the last answer arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0
    private var sentAt: UInt64 = 0

    init(key: ContextKey, limit: UInt64) {
        self.key = key
        self.loop = SendLoop(pace: .closedLoop, limit: limit)
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch event {
        case .value: counts.accepted += 1
        case .refused(let code): counts.refused[code, default: 0] += 1
        default: return
        }
        lastArrival = Stamp.now()
        latency.record(nanoseconds: lastArrival &- sentAt)
        pump()
    }

    /// Gets the context (there is no schedule: a reader runs closed loop).
    func send(scheduled: UInt64?, on outbox: any Outbox) {
        sentAt = Stamp.now()
        outbox.context(.get(key))
        counts.sent += 1
    }
}
