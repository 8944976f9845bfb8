import Bus
import Synchronization

/// Counts open connections per source address and refuses one more than `limit` from any address,
/// so one host cannot take every socket the bus has.
final class ConnectionLimiter: Sendable {
    private struct State {
        var open: [String: Int] = [:]
        /// Refusals not yet audited, and when the last audit event was: at most one a second.
        var refused = 0
        var auditedMs: UInt64 = 0
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes a place for `address`. When it already has `limit` connections: false, and whether
    /// to audit now, with the refusals since the last audit (nil: not yet, one event a second).
    func admit(_ address: String) -> (admitted: Bool, audit: Int?) {
        let now = MonotonicClock.nowMs()
        return state.withLock { state in
            let count = state.open[address, default: 0]
            guard count >= limit else {
                state.open[address] = count + 1
                return (true, nil)
            }
            state.refused += 1
            guard now >= state.auditedMs + 1000 else { return (false, nil) }
            defer { (state.refused, state.auditedMs) = (0, now) }
            return (false, state.refused)
        }
    }

    /// Connections open now, from every address.
    var total: Int { state.withLock { $0.open.values.reduce(0, +) } }

    /// Gives back the place of a connection from `address` that has closed.
    func release(_ address: String) {
        state.withLock { state in
            let count = state.open[address, default: 1] - 1
            state.open[address] = count > 0 ? count : nil
        }
    }
}
