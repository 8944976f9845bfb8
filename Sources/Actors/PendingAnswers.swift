import Bus
import Synchronization

/// What this node asked another node of its cluster (docs/cluster.md) — a context write forwarded to
/// the tenant's home, a stream relayed to its receiver's node — waiting for the answer under a
/// number of this node's.
final class PendingAnswers<Answer: Sendable>: Sendable {
    typealias Done = @Sendable (Answer) -> Void

    private let capacity: Int
    /// Numbered from a random start, so that a late answer meant for an earlier run of this node
    /// (same id, restarted) finds nothing.
    private let state = Mutex<(next: UInt64, waiting: [UInt64: Done])>((.random(in: 1...(1 << 62)), [:]))

    /// - Parameter capacity: most waiting at once; one more is refused.
    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Keeps `done` under a new number; nil when `capacity` wait already.
    func add(_ done: @escaping Done) -> UInt64? {
        state.withLock { state in
            guard state.waiting.count < capacity else { return nil }
            defer { state.next += 1 }
            state.waiting[state.next] = done
            return state.next
        }
    }

    /// Takes what waits under `number` (nil: answered already, or timed out).
    func take(_ number: UInt64) -> Done? {
        state.withLock { $0.waiting.removeValue(forKey: number) }
    }
}
