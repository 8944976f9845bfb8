import NIOCore

/// Writes stamped JSON bodies (``ContextStamp``) to one context and times each write until the
/// server says it is committed: as many in flight as the window allows (`ctx-put`, pace `.window`),
/// or on a fixed schedule (`ctx-watch`'s writer, pace `.openLoop`).
///
/// Both servers answer one connection's writes to one context in the order they were sent, so each
/// answer is timed against the oldest unanswered send.
final class ContextWriter: PacedSender {
    private let key: ContextKey
    private var stamp = ContextStamp()
    var loop: SendLoop
    private(set) var counts = SendCounts()
    private(set) var latency = LatencyRecorder()
    /// The lowest and highest versions the server said it committed; nil before the first.
    private(set) var committed: ClosedRange<UInt64>?
    /// When the last answer arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0
    /// When each unanswered write was sent, oldest first.
    private var sendTimes = CircularBuffer<UInt64>()

    init(key: ContextKey, pace: SendLoop.Pace, limit: UInt64) {
        self.key = key
        self.loop = SendLoop(pace: pace, limit: limit)
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

    /// Writes now, whenever the schedule had it due: a write is timed from when it was sent.
    func send(scheduled: UInt64?, on outbox: any Outbox) {
        let now = Stamp.now()
        outbox.context(.put(key, stamp.body(sequence: counts.sent, nanos: now)))
        sendTimes.append(now)
        counts.sent += 1
    }
}
