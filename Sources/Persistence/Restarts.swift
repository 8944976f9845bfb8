/// When a supervised thread's loop runs again after it failed: 100 ms, doubling up to 5 s, each
/// delay drawn from 80 % to 120 % of that (jitter, so children that failed together do not retry
/// together). Five failures within a minute escalate, and from then on each delay is the longest;
/// a minute without a failure starts over.
struct Restarts {
    private var delayMs: UInt64 = 100
    /// Failure times (monotonic ms) within the last minute.
    private var recent: [UInt64] = []

    static let windowMs: UInt64 = 60_000
    static let escalateAfter = 5

    /// Records a failure at `now`. - Returns: the delay before the next run, in seconds.
    mutating func failed(now: UInt64) -> Double {
        if let last = recent.last, last + Self.windowMs <= now { delayMs = 100 }
        recent = recent.filter { $0 + Self.windowMs > now } + [now]
        if isEscalated { delayMs = 5_000 }
        defer { delayMs = min(2 * delayMs, 5_000) }
        return Double(delayMs) / 1_000 * Double.random(in: 0.8...1.2)
    }

    /// Whether the failures come too often: the child is reported failed.
    var isEscalated: Bool { recent.count >= Self.escalateAfter }
}
