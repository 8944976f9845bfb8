import NIOCore

/// Remembers idempotency keys for a time window so a retried send or request is answered with the
/// first attempt's result instead of running again.
///
/// Bounded twice: at `capacity` keys, or when the results' costs (bytes, say) pass `costBudget`, the
/// oldest key is forgotten first, even inside its window (a retry of it then runs again, which
/// at-least-once allows). Not thread-safe: the owner serialises access.
public struct IdempotencyWindow<Value: Sendable>: Sendable {
    /// What a key's first attempt has come to.
    public enum Lookup: Sendable {
        /// Never seen (or forgotten): run it, then ``complete(_:with:now:)`` or ``cancel(_:)``.
        case new
        /// The first attempt is still running.
        case pending
        /// The first attempt finished with this result.
        case done(Value)
    }

    private enum Entry: Sendable {
        case pending
        case done(Value, cost: Int)

        var cost: Int {
            if case .done(_, let cost) = self { cost } else { 0 }
        }
    }

    public let windowMs: UInt64
    public let capacity: Int
    public let costBudget: Int
    private var entries: [String: (entry: Entry, at: UInt64)] = [:]
    private var order = CircularBuffer<(key: String, at: UInt64)>()
    public private(set) var totalCost = 0

    public init(windowMs: UInt64, capacity: Int, costBudget: Int = .max) {
        self.windowMs = windowMs
        self.capacity = capacity
        self.costBudget = costBudget
    }

    public var count: Int { entries.count }

    /// Whether `key` is held, pending or done (perhaps past its window, not yet evicted).
    public func contains(_ key: String) -> Bool { entries[key] != nil }

    /// Looks `key` up; a new key is recorded as pending.
    public mutating func begin(_ key: String, now: UInt64) -> Lookup {
        evict(now: now)
        switch entries[key]?.entry {
        case .pending: return .pending
        case .done(let value, _): return .done(value)
        case nil:
            entries[key] = (.pending, now)
            order.append((key, now))
            evict(now: now)
            return .new
        }
    }

    /// Records the result of the first attempt of `key`, and what keeping it costs.
    public mutating func complete(_ key: String, with value: Value, cost: Int = 0, now: UInt64) {
        guard let existing = entries[key] else { return }
        totalCost += cost - existing.entry.cost
        entries[key] = (.done(value, cost: cost), existing.at)
        evict(now: now)
    }

    /// Forgets `key`, so a retry runs again (the first attempt failed in a way worth retrying).
    public mutating func cancel(_ key: String) {
        totalCost -= entries.removeValue(forKey: key)?.entry.cost ?? 0
    }

    private mutating func evict(now: UInt64) {
        while let oldest = order.first,
            order.count > capacity || totalCost > costBudget || oldest.at + windowMs <= now
                || entries[oldest.key]?.at != oldest.at
        {
            order.removeFirst()
            if entries[oldest.key]?.at == oldest.at { cancel(oldest.key) }
        }
    }
}

extension IdempotencyWindow.Lookup: Equatable where Value: Equatable {}
