import Bus
import NIOConcurrencyHelpers
import NIOCore

/// The bounded inbox of one session, written by any session and drained by its owner.
///
/// Two lanes: messages (bounded by `capacity`; a full lane refuses, and the sender hears
/// `overloaded`) and control — answers to the owner's own requests, bounded by twice its
/// pending-request limit since only that many can be awaited. The owner is woken at most once per
/// batch: ``offer(_:)`` says whether the caller must schedule a drain.
///
/// Direct messages (SEND by agent id) pass the owner's ``BacklogGate`` under the same lock
/// (``offerDirect(_:mustStore:)``): one taken while the gate is closing waits in a third lane,
/// `parked` (counted against `capacity` with the messages), and joins the message lane's end when
/// it opens.
final class Mailbox: Sendable {
    private struct State {
        // Grown on demand: NIO's default of 16 slots would cost an idle agent about 3 KiB.
        var control = CircularBuffer<Envelope>(initialCapacity: 1)
        var messages = CircularBuffer<Envelope>(initialCapacity: 1)
        /// Direct messages that came while the backlog gate was closing (an array: empty, it
        /// allocates nothing, and it is only ever appended to and emptied whole).
        var parked: [Envelope] = []
        var gate: BacklogGate
        /// Context events of the owner's watches, and watches that ended for falling behind
        /// (watch ref, last position offered).
        var events = CircularBuffer<ContextEvent>(initialCapacity: 1)
        var lagged: [(watch: UInt64, after: UInt64)] = []
        var wakeScheduled = false
        /// Since when (ms) the message lane has refused offers; nil while it has room.
        var fullSince: UInt64?
        /// The owner closed: every offer is refused, so nothing is accepted that nobody will deliver.
        var closed = false
    }

    let capacity: Int
    let controlCapacity: Int
    let eventCapacity: Int
    private let state: NIOLockedValueBox<State>

    /// - Parameter reading: whether the owner starts reading a stored backlog (its gate closed).
    init(capacity: Int, controlCapacity: Int, eventCapacity: Int, reading: Bool) {
        self.capacity = capacity
        self.controlCapacity = controlCapacity
        self.eventCapacity = eventCapacity
        self.state = NIOLockedValueBox(State(gate: BacklogGate(reading: reading)))
    }

    /// What became of an offer.
    enum Verdict {
        case accepted(wake: Bool)
        case full
        case closed
    }

    /// Adds `envelope` to its lane. On `.accepted(wake: true)` the caller must wake the owner.
    func offer(_ envelope: Envelope) -> Verdict {
        state.withLockedValue { state in
            guard !state.closed else { return .closed }
            if envelope.isControl {
                guard state.control.count < controlCapacity else { return .full }
                state.control.append(envelope)
            } else {
                guard Self.hasRoom(&state, capacity: capacity) else { return .full }
                state.messages.append(envelope)
            }
            defer { state.wakeScheduled = true }
            return .accepted(wake: !state.wakeScheduled)
        }
    }

    /// What became of a direct message.
    enum DirectVerdict {
        case accepted(wake: Bool)
        /// The caller stores it instead; it holds the gate until ``releaseBacklogHold()``.
        case store
        case full
        case closed
    }

    /// Adds a direct message (SEND by agent id) to the message lane, unless the backlog gate keeps
    /// it back (parked) or sends it to the store (see ``BacklogGate/route(mustStore:)``). The gate is
    /// read and held under the lock that the offer takes anyway: no atomic of its own on the hot path.
    /// - Parameter overflow: take it beyond the capacity, up to twice it: a message from another node
    ///   of the cluster, whose sender heard OK already (docs/cluster.md).
    func offerDirect(_ envelope: Envelope, mustStore: Bool, overflow: Bool = false) -> DirectVerdict {
        state.withLockedValue { state in
            guard !state.closed else { return .closed }
            let route = state.gate.route(mustStore: mustStore)
            guard route != .store else { return .store }  // stored, it takes no room here
            guard
                Self.hasRoom(&state, capacity: capacity)
                    || (overflow && state.messages.count + state.parked.count < 2 * capacity)
            else { return .full }
            if route == .park {
                state.parked.append(envelope)
                return .accepted(wake: false)
            }
            state.messages.append(envelope)
            defer { state.wakeScheduled = true }
            return .accepted(wake: !state.wakeScheduled)
        }
    }

    /// Whether the message lane (with what is parked) can take one more; if not, notes since when
    /// it is full.
    private static func hasRoom(_ state: inout State, capacity: Int) -> Bool {
        guard state.messages.count + state.parked.count >= capacity else { return true }
        if state.fullSince == nil { state.fullSince = MonotonicClock.nowMs() }
        return false
    }

    /// A message was stored for the owner's agent: the gate waits for it to be read
    /// (``BacklogGate/stored()``).
    func holdBacklog() {
        state.withLockedValue { $0.gate.stored() }
    }

    /// A hold on the gate ends; the owner asks for a read of the backlog right after.
    func releaseBacklogHold() {
        state.withLockedValue { $0.gate.release() }
    }

    /// A read of the backlog came back (see ``BacklogGate/read(complete:)``); if the gate opened,
    /// what was parked joins the message lane's end. - Returns: whether the caller must wake the owner.
    func backlogRead(complete: Bool) -> Bool {
        state.withLockedValue { state in
            guard state.gate.read(complete: complete) else { return false }
            return Self.unpark(&state)
        }
    }

    /// Opens the gate, whatever it waits for (see ``BacklogGate/yield()``).
    /// - Returns: whether the caller must wake the owner.
    func yieldBacklog() -> Bool {
        state.withLockedValue { state in
            guard state.gate.yield() else { return false }
            return Self.unpark(&state)
        }
    }

    private static func unpark(_ state: inout State) -> Bool {
        guard !state.parked.isEmpty else { return false }
        state.messages.append(contentsOf: state.parked)
        state.parked.removeAll()
        defer { state.wakeScheduled = true }
        return !state.wakeScheduled
    }

    /// Puts envelopes back at the front of the message lane, ignoring the bound (they were accepted
    /// once already): redeliveries to a reconnected agent, and retries.
    func requeueFront(_ envelopes: [Envelope]) -> Verdict {
        state.withLockedValue { state in
            guard !state.closed else { return .closed }
            state.messages.insert(contentsOf: envelopes, at: state.messages.startIndex)
            defer { state.wakeScheduled = true }
            return .accepted(wake: !state.wakeScheduled)
        }
    }

    /// Adds a context event, unless `eventCapacity` are already waiting (the watch then ends).
    func offer(_ event: ContextEvent) -> Verdict {
        state.withLockedValue { state in
            guard !state.closed else { return .closed }
            guard state.events.count < eventCapacity else { return .full }
            state.events.append(event)
            defer { state.wakeScheduled = true }
            return .accepted(wake: !state.wakeScheduled)
        }
    }

    /// Records that watch `watch` ended for falling behind. Unbounded by count, but a watch lags
    /// once, and a session holds a bounded number of watches.
    func lagged(watch: UInt64, after: UInt64) -> Verdict {
        state.withLockedValue { state in
            guard !state.closed else { return .closed }
            state.lagged.append((watch, after))
            defer { state.wakeScheduled = true }
            return .accepted(wake: !state.wakeScheduled)
        }
    }

    /// Takes the watches that ended for falling behind, once every event waiting was taken (the
    /// events offered before a watch ended go first).
    func takeLagged() -> [(watch: UInt64, after: UInt64)] {
        state.withLockedValue { state in
            guard state.events.isEmpty else { return [] }
            defer { state.lagged.removeAll() }
            return state.lagged
        }
    }

    /// Takes the next context event.
    func nextEvent() -> ContextEvent? {
        state.withLockedValue { $0.events.popFirst() }
    }

    /// Drops the waiting events of watch `watch` (it was ended).
    func dropEvents(of watch: UInt64) {
        state.withLockedValue { state in
            state.events = CircularBuffer(state.events.lazy.filter { $0.watch != watch })
        }
    }

    /// Something the owner holds became writable (a durable message committed): whether the caller
    /// must wake it, i.e. no wake is on its way yet.
    func needsWake() -> Bool {
        state.withLockedValue { state in
            defer { state.wakeScheduled = true }
            return !state.wakeScheduled
        }
    }

    /// Called by the owner at the start of a drain: later offers must wake it again.
    func beginDrain() {
        state.withLockedValue { $0.wakeScheduled = false }
    }

    /// Moves what the owner may write now into the empty `batch`, under one lock: every control
    /// envelope, then up to `messages` messages (none if a stream is at the head and not
    /// `takeStream`, or a durable message whose store has not answered: what is behind it waits
    /// too, keeping order). When all messages fit and no
    /// control waits, the two buffers are swapped: no envelope is copied.
    /// - Returns: whether anything was taken.
    func take(into batch: inout CircularBuffer<Envelope>, messages: Int, takeStream: Bool) -> Bool {
        state.withLockedValue { state in
            while let control = state.control.popFirst() { batch.append(control) }
            if state.messages.first?.commitState == .pending {
                // Held up by the store, not by the owner's agent: not a slow consumer.
                state.fullSince = nil
            } else if messages > 0, let head = state.messages.first, takeStream || !head.isStream {
                state.fullSince = nil
                if batch.isEmpty, state.messages.count <= messages {
                    swap(&batch, &state.messages)
                } else {
                    for _ in 0..<min(messages, state.messages.count) { batch.append(state.messages.removeFirst()) }
                }
            }
            return !batch.isEmpty
        }
    }

    /// Puts back, at the front of their lanes, what the owner took and could not write. (Answers
    /// are among them only when a drain ran inside another: they are written at once otherwise.)
    func putBack(_ batch: inout CircularBuffer<Envelope>) {
        state.withLockedValue { state in
            guard !state.closed else { return }
            state.control.insert(contentsOf: batch.filter(\.isControl), at: state.control.startIndex)
            state.messages.insert(contentsOf: batch.filter { !$0.isControl }, at: state.messages.startIndex)
        }
        batch.removeAll(keepingCapacity: true)
    }

    /// Refuses every later offer and empties both lanes (the owner is closing).
    func close() -> [Envelope] {
        state.withLockedValue { state in
            state.closed = true
            defer {
                state.control.removeAll()
                state.messages.removeAll()
                state.parked.removeAll()
                state.events.removeAll()
                state.lagged.removeAll()
            }
            return Array(state.control) + Array(state.messages) + state.parked
        }
    }

    var fullSince: UInt64? { state.withLockedValue { $0.fullSince } }
    /// Messages waiting, parked ones included.
    var messageCount: Int { state.withLockedValue { $0.messages.count + $0.parked.count } }
}
