import Synchronization

/// The store's answer to a durable message that already holds its place in its receiver's mailbox
/// (docs/protocol.md 5.1b): written to the receiver once committed, dropped if refused. Until then
/// the receiver's drain stops at it, so what was sent after it to that receiver waits behind it.
final class DurableCommit: Sendable {
    enum State: UInt8 {
        case pending, committed, refused
    }

    private let raw = Atomic<UInt8>(State.pending.rawValue)

    var state: State { State(rawValue: raw.load(ordering: .acquiring)) ?? .refused }

    /// The store answered, from its thread; the receiver is woken after.
    func resolve(committed: Bool) {
        raw.store((committed ? State.committed : .refused).rawValue, ordering: .releasing)
    }
}
