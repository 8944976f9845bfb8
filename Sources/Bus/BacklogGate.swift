/// Whether direct messages (SEND by agent id) to a session may be delivered at once, or must wait
/// for its agent's stored messages, which the session reads back from the message store a page at a
/// time. Not thread-safe: its owner (the session's mailbox) serialises access.
///
/// Phases:
/// - `reading` (from the start, when there is a store): a direct message is stored behind the
///   backlog, and holds the gate (``holds``) until its store has landed.
/// - `closing`: the backlog was read to its end, but stores that hold the gate have not landed, or
///   landed after the last read was asked for. A direct message waits in the mailbox (`park`) instead
///   of being stored, so the gate opens once those few stores are read, however much is sent.
/// - `open`: direct messages are delivered at once. A message stored for the agent meanwhile (one
///   sent while it was offline and still being stored when it connected, or by an operator) closes
///   the gate again until it is read.
///
/// Each hold ends with ``release()``, and the owner asks for a read of the backlog right after; the
/// gate opens only when a read that was asked for after the last release comes back complete
/// (``read(complete:)``). So a message whose store held the gate is in the mailbox, ahead of what
/// was parked, before anything is delivered at once again.
public struct BacklogGate: Sendable {
    public enum Phase: Sendable { case reading, closing, open }

    /// Where a direct message goes.
    public enum Route: Sendable {
        /// Delivered at once.
        case deliver
        /// Kept back until the gate opens, then delivered behind what was read.
        case park
        /// Stored behind the backlog; it holds the gate until ``release()``.
        case store
    }

    public private(set) var phase: Phase
    /// Stores toward the session that may not have been read yet: direct messages stored behind the
    /// backlog, and messages stored for the agent, each until its ``release()``.
    public private(set) var holds = 0

    /// - Parameter reading: whether the agent may have stored messages (there is a store).
    public init(reading: Bool) {
        phase = reading ? .reading : .open
    }

    /// Routes a direct message. - Parameter mustStore: the sender has an earlier message to the same
    /// agent still being stored that holds no gate of this session: this one is stored too, behind it.
    public mutating func route(mustStore: Bool) -> Route {
        switch phase {
        case .open where !mustStore: return .deliver
        case .closing where !mustStore: return .park
        case .reading, .closing, .open:
            hold()
            return .store
        }
    }

    /// A message was stored for the agent, unasked by this gate: it must be read before anything
    /// more is delivered at once. Holds the gate until ``release()``.
    public mutating func stored() {
        hold()
    }

    /// A hold ends: its store landed (or was refused), and the owner asks for a read right after.
    public mutating func release() {
        precondition(holds > 0, "a backlog gate released more often than held")
        holds -= 1
    }

    /// A read of the backlog came back. - Parameter complete: it was short, and nothing asked for a
    /// read while it was under way (the owner's "more" is false).
    /// - Returns: whether the gate opened: what was parked goes behind what was read.
    public mutating func read(complete: Bool) -> Bool {
        guard complete, phase != .open else { return false }
        guard holds == 0 else {
            phase = .closing
            return false
        }
        phase = .open
        return true
    }

    /// The backlog cannot be read (the store is unreachable) or no longer will be (shutdown): direct
    /// messages are delivered at once, and order yields to delivery.
    /// - Returns: whether the gate opened.
    public mutating func yield() -> Bool {
        defer { phase = .open }
        return phase != .open
    }

    private mutating func hold() {
        holds += 1
        if phase == .open { phase = .closing }
    }
}
