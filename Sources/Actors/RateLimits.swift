import Bus
import NIOConcurrencyHelpers

/// Per-agent rate limits that outlive a session: a session takes its agent's bucket when it opens
/// and gives it back when it closes, so reconnecting does not refill it. Buckets that have filled
/// up again are forgotten (``forgetFull(nowMs:)``), so this holds only recently busy agents.
final class RateLimits: Sendable {
    private let perSecond: Double
    private let burst: UInt32
    private let parked = NIOLockedValueBox<[AgentKey: TokenBucket]>([:])

    /// Limits of `perSecond` commands with bursts of `burst`; nil when `perSecond` is 0 (no limit).
    init?(perSecond: Double, burst: UInt32) {
        guard perSecond > 0 else { return nil }
        self.perSecond = perSecond
        self.burst = burst
    }

    /// The bucket of `key`: the one its last session left, else a full one.
    func take(_ key: AgentKey, nowMs: UInt64) -> TokenBucket {
        parked.withLockedValue { $0.removeValue(forKey: key) }
            ?? TokenBucket(perSecond: perSecond, burst: burst, nowMs: nowMs)
    }

    /// Keeps `bucket` for the agent's next session.
    func park(_ bucket: TokenBucket, for key: AgentKey) {
        parked.withLockedValue { $0[key] = bucket }
    }

    /// Drops the buckets that are full again.
    func forgetFull(nowMs: UInt64) {
        parked.withLockedValue { parked in
            parked = parked.filter { _, bucket in
                var bucket = bucket
                return !bucket.isFull(nowMs: nowMs)
            }
        }
    }
}
