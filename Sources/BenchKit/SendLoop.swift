import NIOCore

/// A ``PacedSender``'s pace and where it stands: the outbox it sends on, whether it is running, and in
/// open loop which sends have fallen due.
///
/// Open loop sends `perSecond` from ``start()`` whatever the answers do, up to `limit`. A send that
/// falls due while `maxOutstanding` are unanswered is skipped and counted, not queued: a stalled server
/// shows as skips, not as a backlog the harness would send late. Used on the connection's event loop
/// only, as the sender that holds it.
struct SendLoop {
    /// How a sender paces its sends.
    enum Pace: Sendable {
        /// One send in flight: the first on start, the next as each answer comes back.
        case closedLoop
        /// Up to `window` sends in flight, the next sent as each answer comes back.
        case window(Int)
        /// `perSecond` sends on a fixed schedule whatever the answers do; a send that falls due while
        /// `maxOutstanding` are unanswered is skipped and counted.
        case openLoop(perSecond: Double, maxOutstanding: UInt64)
    }

    let pace: Pace
    /// Sends at the most, made or skipped (count mode).
    let limit: UInt64
    /// The connection's, once the sender is attached.
    weak var outbox: (any Outbox)?
    /// Open loop's clock; ``stop()`` cancels it.
    var ticker: RepeatedTask?
    /// Between ``start()`` and ``stop()``.
    private(set) var isRunning = false
    /// Open-loop sends not made, because `maxOutstanding` were unanswered when they fell due.
    private(set) var skipped: UInt64 = 0
    /// When ``start()`` was called, in ``Stamp/now()`` nanoseconds.
    private var startNanos: UInt64 = 0

    init(pace: Pace, limit: UInt64) {
        self.pace = pace
        self.limit = limit
    }

    mutating func start() {
        isRunning = true
        startNanos = Stamp.now()
    }

    mutating func stop() {
        isRunning = false
        ticker?.cancel()
    }

    /// Open loop: when the next send due by `now` (``Stamp/now()`` nanoseconds) fell due, or nil if
    /// none is (nor ever in a closed loop). Skips, and counts, the ones that fall due while
    /// `maxOutstanding` of `counts` are unanswered. The sender makes the send, which `counts` then
    /// includes, before it asks again.
    mutating func nextDue(by now: UInt64, _ counts: SendCounts) -> UInt64? {
        guard case .openLoop(let rate, let maxOutstanding) = pace else { return nil }
        let due = min(limit, UInt64(Double(now - startNanos) / 1e9 * rate))
        while counts.sent + skipped < due {
            guard counts.unanswered >= maxOutstanding else {
                return startNanos + UInt64(Double(counts.sent + skipped) / rate * 1e9)
            }
            skipped += 1
        }
        return nil
    }
}
