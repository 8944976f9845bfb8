import NIOCore

/// The SEND, BROADCAST and PUBLISH refs of an ACB connection not yet settled, in the order sent, so
/// increasing (docs/protocol.md, 4.5b): an OK or ERROR answers one on its own (under protocol 1,
/// every one), and a protocol 2 CONFIRM settles as succeeded every one up to its ref that had no
/// such answer.
struct PendingRefs {
    /// Increasing: the pending ones, and those answered on their own behind a pending one.
    private var refs = CircularBuffer<UInt64>()
    /// Refs in `refs` that were answered on their own.
    private var answered: Set<UInt64> = []

    mutating func sent(_ ref: UInt64) { refs.append(ref) }

    /// An OK or ERROR for `ref`. - Returns: whether it answers a pending SEND, BROADCAST or PUBLISH
    /// (else it answers some other command).
    mutating func answer(_ ref: UInt64) -> Bool {
        guard isPending(ref), answered.insert(ref).inserted else { return false }
        while let first = refs.first, answered.remove(first) != nil { refs.removeFirst() }
        return true
    }

    /// A CONFIRM of every ref up to `ref`. - Returns: how many pending sends it settles.
    mutating func confirm(through ref: UInt64) -> Int {
        var confirmed = 0
        while let first = refs.first, first <= ref {
            if answered.remove(first) == nil { confirmed += 1 }
            refs.removeFirst()
        }
        return confirmed
    }

    /// Binary search of the pending refs.
    private func isPending(_ ref: UInt64) -> Bool {
        var (low, high) = (0, refs.count)
        while low < high {
            let middle = (low + high) / 2
            if refs[refs.index(refs.startIndex, offsetBy: middle)] < ref { low = middle + 1 } else { high = middle }
        }
        return low < refs.count && refs[refs.index(refs.startIndex, offsetBy: low)] == ref
    }
}
