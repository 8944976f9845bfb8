import Bus
import Synchronization

/// A token bucket per source address, so one host cannot take what all share (LOGINs, admin
/// requests). Full buckets are forgotten once 10,000 addresses are known, so memory stays bounded.
final class AddressBuckets: Sendable {
    private let perSecond: Double
    private let burst: UInt32
    private let buckets = Mutex<[String: TokenBucket]>([:])

    init(perSecond: Double, burst: UInt32) {
        self.perSecond = perSecond
        self.burst = burst
    }

    /// Takes a token of `address`'s bucket. - Returns: nil if there was one, else in how many ms there will be.
    func take(for address: String) -> UInt32? {
        let now = MonotonicClock.nowMs()
        return buckets.withLock { buckets in
            if buckets.count >= 10_000 {
                buckets = buckets.filter { _, bucket in
                    var bucket = bucket
                    return !bucket.isFull(nowMs: now)
                }
            }
            var bucket = buckets[address] ?? TokenBucket(perSecond: perSecond, burst: burst, nowMs: now)
            defer { buckets[address] = bucket }
            return bucket.take(nowMs: now)
        }
    }
}
