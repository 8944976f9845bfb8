/// A token bucket: `burst` tokens, refilled at `perSecond`; each command takes one.
public struct TokenBucket: Sendable, Equatable {
    public let perSecond: Double
    public let burst: Double
    private var tokens: Double
    private var updatedMs: UInt64

    /// A full bucket at `nowMs`.
    public init(perSecond: Double, burst: UInt32, nowMs: UInt64) {
        self.perSecond = perSecond
        self.burst = Double(max(burst, 1))
        tokens = self.burst
        updatedMs = nowMs
    }

    /// Takes a token. Nil when there was one; else the milliseconds until there will be.
    public mutating func take(nowMs: UInt64) -> UInt32? {
        take(upTo: 1, nowMs: nowMs).retryAfterMs
    }

    /// Takes as many whole tokens as there are, up to `count`. When there is none: 0, and the
    /// milliseconds until there will be one.
    public mutating func take(upTo count: UInt32, nowMs: UInt64) -> (granted: UInt32, retryAfterMs: UInt32?) {
        refill(nowMs)
        guard tokens >= 1 else {
            return (0, UInt32(min(((1 - tokens) * 1000 / perSecond).rounded(.up), Double(UInt32.max))))
        }
        let granted = UInt32(min(tokens.rounded(.down), Double(count)))
        tokens -= Double(granted)
        return (granted, nil)
    }

    /// Whether the bucket is full again at `nowMs` (and so need not be remembered).
    public mutating func isFull(nowMs: UInt64) -> Bool {
        refill(nowMs)
        return tokens >= burst
    }

    private mutating func refill(_ nowMs: UInt64) {
        guard nowMs > updatedMs else { return }
        tokens = min(burst, tokens + Double(nowMs - updatedMs) * perSecond / 1000)
        updatedMs = nowMs
    }
}
