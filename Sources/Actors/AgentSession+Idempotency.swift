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

    /// In a cluster, a key this node's window lacks may have been used on another node, by the
    /// agent's session there before it moved: every node keeps its keys in Redis, which is asked
    /// first (``awaitSharedKey(_:_:retry:)``).
    /// - Returns: the key scoped to the agent when Redis must be asked; nil otherwise (outside a
    ///   cluster, without a key, or with a key this node knows), at the cost of a nil check.
    func sharedKeyToAsk(_ key: String) -> String? {
        guard supervisor.cluster != nil, !key.isEmpty, key != sharedKeyChecked,
            (try? Identifier.validate(key, field: "idempotency_key")) != nil
        else { return nil }
        let scoped = "\(identity.tenant)/\(identity.agentID)/\(key)"
        return supervisor.idempotency.withLockedValue({ $0.contains(scoped) }) ? nil : scoped
    }

    /// Asks Redis for `key` (scoped by ``sharedKeyToAsk(_:)``), with the session's later frames held
    /// (``holding(_:then:)``); `retry` then runs the command again, with the key's first result in
    /// this node's window if Redis had one.
    func awaitSharedKey(_ scoped: String, _ key: String, retry: @escaping @Sendable (isolated AgentSession) -> Void) {
        guard let cluster = supervisor.cluster else { return retry(self) }
        holding({ cluster.sharedIdempotencyKey(scoped, then: $0) }) { session, kept in
            if let kept { session.supervisor.restoreIdempotency([(scoped, kept.result, kept.ttlMs)]) }
            session.sharedKeyChecked = key
            defer { session.sharedKeyChecked = nil }
            retry(session)
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
