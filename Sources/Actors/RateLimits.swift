import Bus
import NIOConcurrencyHelpers

/// Per-agent rate limits: one token bucket per agent, shared by every session the agent has or
/// opens (a reconnect, or a second connection taking over, continues with the same bucket).
/// Buckets that no session uses and that have filled up again are forgotten
/// (``forgetFull(nowMs:)``), so this holds only connected or recently busy agents.
final class RateLimits: Sendable {
    /// One agent's bucket, and how many sessions use it; they take from it on any event loop.
    final class Bucket: Sendable {
        private let state: NIOLockedValueBox<(bucket: TokenBucket, sessions: Int)>

        init(_ bucket: TokenBucket) {
            self.state = NIOLockedValueBox((bucket, 0))
        }

        /// Up to `count` commands' worth of tokens; none, and when to retry, if there is none.
        func take(upTo count: UInt32, nowMs: UInt64) -> (granted: UInt32, retryAfterMs: UInt32?) {
            state.withLockedValue { $0.bucket.take(upTo: count, nowMs: nowMs) }
        }

        /// A session of the agent stopped using the bucket.
        func release() {
            state.withLockedValue { $0.sessions -= 1 }
        }

        fileprivate func acquire() {
            state.withLockedValue { $0.sessions += 1 }
        }

        /// No session uses it and it is full: a new bucket would be the same.
        fileprivate func isIdle(nowMs: UInt64) -> Bool {
            state.withLockedValue { $0.sessions == 0 && $0.bucket.isFull(nowMs: nowMs) }
        }
    }

    private let perSecond: Double
    private let burst: UInt32
    private let buckets = NIOLockedValueBox<[AgentKey: Bucket]>([:])

    /// Limits of `perSecond` commands with bursts of `burst`; nil when `perSecond` is 0 (no limit).
    init?(perSecond: Double, burst: UInt32) {
        guard perSecond > 0 else { return nil }
        self.perSecond = perSecond
        self.burst = burst
    }

    /// The bucket of `key` for a new session (which ``Bucket/release()``s it when it ends): the one
    /// the agent's sessions use, else a full one.
    func bucket(for key: AgentKey, nowMs: UInt64) -> Bucket {
        buckets.withLockedValue { buckets in
            let bucket = buckets[key] ?? Bucket(TokenBucket(perSecond: perSecond, burst: burst, nowMs: nowMs))
            buckets[key] = bucket
            bucket.acquire()
            return bucket
        }
    }

    /// Drops the buckets no session uses that are full again.
    func forgetFull(nowMs: UInt64) {
        buckets.withLockedValue { buckets in
            buckets = buckets.filter { !$0.value.isIdle(nowMs: nowMs) }
        }
    }
}
