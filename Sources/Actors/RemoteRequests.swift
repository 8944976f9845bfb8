import Bus
import NIOConcurrencyHelpers

/// Requests from agents on other nodes that this node's agents are answering (docs/cluster.md):
/// each has a local number, which the responder sees as the low half of the correlation id (the
/// high half, session number 0, names no session), and keeps where its answer goes.
///
/// Bounded: a request that finds it full is refused with `overloaded`. An entry ends with the
/// answer, or at its deadline (``expire(now:)``).
final class RemoteRequests: Sendable {
    /// Where one request's answer goes.
    struct Origin: Sendable {
        var node: String
        var tenant: String
        /// The requester's correlation id on `node`.
        var correlationID: UInt64
        /// Unix ms after which nobody waits for the answer.
        var deadline: UInt64
    }

    private struct State {
        var byNumber: [UInt32: Origin] = [:]
        var next: UInt32 = 0
    }

    private let state = NIOLockedValueBox(State())
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Remembers `origin`. - Returns: its local number, or nil when full.
    func insert(_ origin: Origin) -> UInt32? {
        state.withLockedValue { state in
            guard state.byNumber.count < capacity else { return nil }
            repeat { state.next &+= 1 } while state.byNumber[state.next] != nil
            state.byNumber[state.next] = origin
            return state.next
        }
    }

    /// Takes the request `number` out, for its answer.
    func take(_ number: UInt32) -> Origin? {
        state.withLockedValue { $0.byNumber.removeValue(forKey: number) }
    }

    /// Forgets the requests whose deadline passed: their requesters' nodes time them out.
    func expire(now: UInt64) {
        state.withLockedValue { $0.byNumber = $0.byNumber.filter { $0.value.deadline > now } }
    }
}
