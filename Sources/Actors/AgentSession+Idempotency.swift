import Bus
import NIOConcurrencyHelpers

extension AgentSession {
    /// Whether to run a command or answer it from the idempotency window.
    enum IdempotentStart {
        /// Run it; complete or forget the scoped key afterwards (empty when the command had no key).
        case run(scopedKey: String)
        /// A retry of a finished command: answer with this.
        case answered(IdempotentResult)
    }

    /// Looks up an idempotency key, scoped to this tenant and agent; the window runs on the monotonic clock.
    /// - Throws: ``ErrorCode/conflict`` while the first attempt still runs.
    func beginIdempotent(_ key: String) throws(BusError) -> IdempotentStart {
        guard !key.isEmpty else { return .run(scopedKey: "") }
        try Identifier.validate(key, field: "idempotency_key")
        let scoped = "\(identity.tenant)/\(identity.agentID)/\(key)"
        switch supervisor.idempotency.withLockedValue({ $0.begin(scoped, now: MonotonicClock.nowMs()) }) {
        case .new: return .run(scopedKey: scoped)
        case .done(let result): return .answered(result)
        case .pending:
            throw BusError(
                .conflict, "a command with this idempotency key is still running",
                retryAfterMs: 100)
        }
    }

    func completeIdempotent(_ scoped: String, _ result: IdempotentResult) {
        guard !scoped.isEmpty else { return }
        supervisor.idempotency.withLockedValue {
            $0.complete(scoped, with: result, cost: result.cost, now: MonotonicClock.nowMs())
        }
        supervisor.shared?.rememberIdempotencyKey(
            scoped, result: result.encoded, ttlMs: configuration.idempotencyWindowMs)
    }

    func forgetIdempotencyKey(_ scoped: String) {
        guard !scoped.isEmpty else { return }
        supervisor.idempotency.withLockedValue { $0.cancel(scoped) }
    }
}
