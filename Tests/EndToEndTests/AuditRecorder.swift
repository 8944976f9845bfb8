import Actors
import Bus
import Synchronization

/// An audit sink that lets a test wait for the event it expects instead of polling for its effect.
final class AuditRecorder: AuditSink {
    private struct Waiter {
        var matches: @Sendable (AuditEvent) -> Bool
        var continuation: CheckedContinuation<AuditEvent, Never>
    }

    private struct State {
        var events: [AuditEvent] = []
        var waiters: [Waiter] = []
    }

    private let state = Mutex(State())

    func record(_ event: AuditEvent) {
        let ready = state.withLock { state in
            state.events.append(event)
            let ready = state.waiters.filter { $0.matches(event) }
            state.waiters.removeAll { $0.matches(event) }
            return ready
        }
        for waiter in ready { waiter.continuation.resume(returning: event) }
    }

    func close() {}

    /// The first event, recorded already or still to come, that matches.
    @discardableResult
    func first(where matches: @escaping @Sendable (AuditEvent) -> Bool) async -> AuditEvent {
        await withCheckedContinuation { continuation in
            let found: AuditEvent? = state.withLock { state in
                if let event = state.events.first(where: matches) { return event }
                state.waiters.append(Waiter(matches: matches, continuation: continuation))
                return nil
            }
            if let found { continuation.resume(returning: found) }
        }
    }

    /// How many events of `kind` were recorded so far.
    func count(_ kind: String) -> Int {
        state.withLock { $0.events.count { $0.kind == kind } }
    }

    /// Waits for the first event of `kind` about `agent`.
    @discardableResult
    func first(_ kind: String, agent: String) async -> AuditEvent {
        await first { $0.kind == kind && $0.agentID == agent }
    }
}
