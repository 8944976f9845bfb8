import Bus
import NIOConcurrencyHelpers
import NIOCore

/// The bounded inbox of one session, written by any session and drained by its owner.
///
/// Two lanes: messages (bounded by `capacity`; a full lane refuses, and the sender hears
/// `overloaded`) and control — answers to the owner's own requests, bounded by twice its
/// pending-request limit since only that many can be awaited. The owner is woken at most once per
/// batch: ``offer(_:)`` says whether the caller must schedule a drain.
final class Mailbox: Sendable {
    private struct State {
        // Grown on demand: NIO's default of 16 slots would cost an idle agent about 3 KiB.
        var control = CircularBuffer<Envelope>(initialCapacity: 1)
        var messages = CircularBuffer<Envelope>(initialCapacity: 1)
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
    private let state = NIOLockedValueBox(State())

    init(capacity: Int, controlCapacity: Int, eventCapacity: Int) {
        self.capacity = capacity
        self.controlCapacity = controlCapacity
        self.eventCapacity = eventCapacity
    }

    /// Messages waiting in the message lane.
    var depth: Int { state.withLockedValue { $0.messages.count } }

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
                guard state.messages.count < capacity else {
                    if state.fullSince == nil { state.fullSince = MonotonicClock.nowMs() }
                    return .full
                }
                state.messages.append(envelope)
            }
            defer { state.wakeScheduled = true }
            return .accepted(wake: !state.wakeScheduled)
        }
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

    /// Called by the owner at the start of a drain: later offers must wake it again.
    func beginDrain() {
        state.withLockedValue { $0.wakeScheduled = false }
    }

    /// Moves what the owner may write now into the empty `batch`, under one lock: every control
    /// envelope, then up to `messages` messages (none if a stream is at the head and not
    /// `takeStream`: what is behind it waits too, keeping order). When all messages fit and no
    /// control waits, the two buffers are swapped: no envelope is copied.
    /// - Returns: whether anything was taken.
    func take(into batch: inout CircularBuffer<Envelope>, messages: Int, takeStream: Bool) -> Bool {
        state.withLockedValue { state in
            while let control = state.control.popFirst() { batch.append(control) }
            if messages > 0, let head = state.messages.first, takeStream || !head.isStream {
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
                state.events.removeAll()
                state.lagged.removeAll()
            }
            return Array(state.control) + Array(state.messages)
        }
    }

    var fullSince: UInt64? { state.withLockedValue { $0.fullSince } }
    var messageCount: Int { state.withLockedValue { $0.messages.count } }
}
