import Bus
import NIOCore

/// What waits to be written to one watch's event stream (GET /contexts/{id}/watch): the events
/// offered and not yet written, whether a heartbeat is due, and how the stream ends. A value with
/// no I/O: ``ContextStreamWatcher`` keeps it under a lock and wakes the writer.
///
/// Bounded by ``maxEvents`` events and ``maxBytes`` bytes of payload (about: each event counts its
/// payload and ``overhead``), as a session's context events are by its mailbox (docs/security.md):
/// an event that would pass a bound is refused, and the service then ends the watch
/// (``lagged(after:)``). An event is always taken when none waits, however large (at most
/// `Limits.maxEventBody` of payload). The stream ends after the events taken before its ending.
struct ContextFeed {
    /// Why a stream ends.
    enum Ending: Equatable, Sendable {
        /// The watch fell behind; `after` is the last position it reached.
        case lagged(after: UInt64)
        /// The admin API is shutting down.
        case shuttingDown
        /// Nobody reads any more (the writing task was cancelled): what waits is dropped.
        case gone
    }

    /// What the writer writes next.
    enum Item: Sendable {
        case event(ContextEvent)
        /// Nothing happened for a while: a comment line, to keep the connection open.
        case heartbeat
        /// The last item of the stream.
        case end(Ending)
    }

    /// Events waiting at most, as a session's mailbox holds.
    static let maxEvents = 4_096
    /// Payload bytes waiting at most (and ``overhead`` per event): 8 MiB.
    static let maxBytes = 8 << 20
    /// What an event costs besides its payload, about (its head).
    static let overhead = 512

    private var events = CircularBuffer<ContextEvent>()
    private var bytes = 0
    private var heartbeatDue = false
    private var ending: Ending?
    private var endTaken = false

    /// Whether the ending was taken: nothing follows.
    var isFinished: Bool { endTaken }

    /// Queues `event`. - Returns: false, queueing nothing, when it does not fit or the feed ends.
    mutating func offer(_ event: ContextEvent) -> Bool {
        guard ending == nil else { return false }
        let cost = Self.cost(of: event)
        guard events.isEmpty || (events.count < Self.maxEvents && bytes + cost <= Self.maxBytes) else { return false }
        events.append(event)
        bytes += cost
        return true
    }

    /// The service ended the watch because an event did not fit.
    mutating func lagged(after: UInt64) { end(.lagged(after: after)) }

    /// Ends the feed: the events queued are still taken (but for ``Ending/gone``), then `ending`.
    /// Only the first ending counts.
    mutating func end(_ ending: Ending) {
        guard self.ending == nil else { return }
        self.ending = ending
        heartbeatDue = false
        if ending == .gone {
            events.removeAll()
            bytes = 0
        }
    }

    /// Asks for a heartbeat, unless something else is written first.
    mutating func heartbeat() {
        if ending == nil { heartbeatDue = true }
    }

    /// The next item to write: an event, then the ending once no event waits, else a due
    /// heartbeat; nil when there is nothing yet, and for ever once the ending was taken.
    mutating func take() -> Item? {
        if let event = events.popFirst() {
            bytes -= Self.cost(of: event)
            heartbeatDue = false
            return .event(event)
        }
        if let ending {
            guard !endTaken else { return nil }
            endTaken = true
            return .end(ending)
        }
        guard heartbeatDue else { return nil }
        heartbeatDue = false
        return .heartbeat
    }

    private static func cost(of event: ContextEvent) -> Int { event.payload.readableBytes + overhead }
}
