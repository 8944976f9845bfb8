public import Bus
import NIOCore

/// What operators (the admin API) do on agents' behalf, through the same paths as the wire.
extension Supervisor {
    /// Records or replaces `key`'s description (REGISTER), after the wire's checks; audited as
    /// `agent.registered`, with `by` (the operator) when someone else registered it. The registry
    /// has it at once; `saved` gets nil once it is durable too (at once without a store), else the
    /// store's refusal.
    /// - Returns: whether the agent was not registered before.
    @discardableResult
    public nonisolated func register(
        _ key: AgentKey, _ description: AgentDescription, by: String? = nil,
        saved: @escaping @Sendable (BusError?) -> Void
    ) throws(BusError) -> Bool {
        try Identifier.validate(description.agentType, field: "agent_type")
        for capability in description.capabilities { try Identifier.validate(capability, field: "capability") }
        for entry in description.metadata { try Identifier.validate(entry.key, field: "metadata.key") }
        guard description.location.utf8.count <= Limits.maxLocationBytes,
            description.metadata.allSatisfy({ $0.value.utf8.count <= Limits.maxMetadataValueBytes })
        else {
            throw BusError(
                .invalidArgument,
                "location is limited to \(Limits.maxLocationBytes) bytes, "
                    + "metadata values to \(Limits.maxMetadataValueBytes)")
        }
        let isNew = registry.register(key, description)
        routing.setCapabilities(description.capabilities, for: key)
        save(key, description, saved)
        announce(key, description)
        record(
            "agent.registered", tenant: key.tenant, agentID: key.agentID, by.details(["type": description.agentType]))
        return isNew
    }

    /// Removes `key` from the registry (UNREGISTER); audited as `agent.unregistered`. `saved` as
    /// for ``register(_:_:by:saved:)``.
    /// - Throws: ``ErrorCode/unknownAgent`` when it is not registered.
    public nonisolated func unregister(
        _ key: AgentKey, by: String? = nil, saved: @escaping @Sendable (BusError?) -> Void
    ) throws(BusError) {
        guard registry.unregister(key) else { throw unknown(key) }
        routing.setCapabilities([], for: key)
        save(key, nil, saved)
        announce(key, nil)
        record("agent.unregistered", tenant: key.tenant, agentID: key.agentID, by.details())
    }

    /// ``register(_:_:by:saved:)`` for a caller that can wait: returns once the registration is durable.
    public nonisolated func register(_ key: AgentKey, _ description: AgentDescription, by: String? = nil)
        async throws(BusError) -> Bool
    {
        try await durably { saved throws(BusError) in try register(key, description, by: by, saved: saved) }
    }

    /// ``unregister(_:by:saved:)`` for a caller that can wait: returns once the removal is durable.
    public nonisolated func unregister(_ key: AgentKey, by: String? = nil) async throws(BusError) {
        try await durably { saved throws(BusError) in try unregister(key, by: by, saved: saved) }
    }

    /// Runs `change`, then waits for the store's answer it passes to its `saved` callback.
    private nonisolated func durably<T>(
        _ change: (@escaping @Sendable (BusError?) -> Void) throws(BusError) -> T
    ) async throws(BusError) -> T {
        var value: T?
        let refusal: BusError? = await withCheckedContinuation { done in
            do throws(BusError) {
                value = try change { done.resume(returning: $0) }
            } catch {
                done.resume(returning: error)  // `change` refused before it saved anything
            }
        }
        if let refusal { throw refusal }
        return value!  // set: `change` returned
    }

    private nonisolated func save(
        _ key: AgentKey, _ description: AgentDescription?, _ saved: @escaping @Sendable (BusError?) -> Void
    ) {
        guard let store else { return saved(nil) }
        store.saveAgent(key, description, done: saved)
    }

    /// One page of the tenant's registered agents matching `filter`, and the next page's cursor.
    public nonisolated func discover(tenant: String, _ filter: Discover) -> (agents: [AgentInfo], next: String) {
        registry.discover(tenant: tenant, filter: filter, live: live)
    }

    /// The registered agent `key`, nil if it is not registered.
    public nonisolated func agent(_ key: AgentKey) -> AgentInfo? {
        registry.info(of: key, live: live)
    }

    /// In a cluster, the node holding `key`'s live session (this node's id for a session here); nil
    /// outside a cluster or while the agent is offline.
    public nonisolated func node(of key: AgentKey) -> String? {
        guard let cluster else { return nil }
        return routing.session(for: key) != nil ? cluster.nodeID : cluster.node(of: key)
    }

    /// The readiness and load of `key`'s live session, nil while it is offline. A session on another
    /// node of the cluster is as its node last reported it for an agent offering capabilities (busy
    /// when not ready); any other counts as ready with none in flight.
    private nonisolated func live(_ key: AgentKey) -> (Readiness, UInt32)? {
        if let session = routing.session(for: key) {
            return (session.load.readiness, UInt32(clamping: session.load.inFlight))
        }
        guard let cluster, cluster.node(of: key) != nil else { return nil }
        switch cluster.remoteLoad(of: key) {
        case .ready(let inFlight): return (.ready, inFlight)
        case .notReady: return (.busy, 0)
        case nil: return (.ready, 0)
        }
    }

    /// Stores a direct message for `to` from `from` and wakes `to`'s session, which delivers it
    /// like any stored message (acknowledged, redelivered, dead-lettered), so its status can be
    /// followed by id.
    /// - Returns: the message's id, once it is durable.
    /// - Throws: ``ErrorCode/unknownAgent`` when `to` is neither registered nor online,
    ///   ``ErrorCode/unavailable`` without a store, ``ErrorCode/tooLarge``, or the store's refusal.
    public nonisolated func storeMessage(to: AgentKey, from: String, payload: [UInt8])
        async throws(BusError) -> UInt64
    {
        guard store != nil else { throw BusError(.unavailable, "messages sent by operators need PostgreSQL") }
        guard payload.count <= configuration.limits.maxInlinePayload else {
            throw BusError(
                .tooLarge, "payload of \(payload.count) bytes exceeds \(configuration.limits.maxInlinePayload)")
        }
        guard knows(to) else { throw unknown(to) }
        let message = storedMessage(to: to, from: from, payload: payload)
        let error: BusError? = await withCheckedContinuation { done in
            enqueueStored(message, holding: nil) { done.resume(returning: $0) }
        }
        if let error { throw error }
        return message.id
    }

    /// Whether `key` is registered or online: whether a message for it can be stored.
    public nonisolated func knows(_ key: AgentKey) -> Bool {
        registry.isRegistered(key) || routing.session(for: key) != nil
    }

    /// The refusal for an agent the registry lacks: `unknown_agent`, or, while the registry is not
    /// read from storage yet (it may exist), the retryable `storage_unavailable`.
    public nonisolated func unknown(_ key: AgentKey) -> BusError {
        registry.isComplete
            ? BusError(.unknownAgent, "no agent \(key.agentID) in tenant \(key.tenant)")
            : BusError(.storageUnavailable, "the registry is not read from storage yet; try again", retryAfterMs: 1_000)
    }

    /// A message that operators stored directly (a replayed dead letter, under ``nextMessageID()``):
    /// audited as `message.queued` like any stored message, counted, and its receiver woken.
    public nonisolated func messageStored(_ id: UInt64, to: AgentKey, from: String, bytes: Int) {
        record(
            "message.queued", tenant: to.tenant, agentID: from,
            ["to": to.agentID, "message": "\(id)", "bytes": "\(bytes)"])
        metrics.routed(.direct, .queued)
        arrived(for: to)
    }

    /// Hands `message` to the store; once it is durable, counts it `queued`, makes its receiver's
    /// live session read it before delivering anything more at once (that session may have read its
    /// backlog already), then calls `done`; else counts it `failed` and calls `done` with the
    /// refusal. Either way the backlog gate `holding` held for it is released (see
    /// AgentSession+Backlog). SEND to an offline agent, SEND behind a backlog and operators all go
    /// this way.
    nonisolated func enqueueStored(
        _ message: StoredMessage, holding gate: AgentSession?, done: @escaping @Sendable (BusError?) -> Void
    ) {
        assert(store != nil || gate == nil, "a backlog gate is held only where there is a store")
        enqueue(message) { [self] error in
            if error == nil {
                arrived(for: AgentKey(tenant: message.tenant, agentID: message.to), holding: gate)
            } else {
                gate?.backlogHoldEnded()
            }
            done(error)
        }
    }

    /// Stores a durable message that already holds its place in `receiver`'s mailbox, as handed out
    /// to it; once the store answers, the message is released to the receiver (or dropped, if
    /// refused) and `done` is called.
    nonisolated func enqueueHandedOut(
        _ message: StoredMessage, commit: DurableCommit, to receiver: AgentSession,
        done: @escaping @Sendable (BusError?) -> Void
    ) {
        enqueue(message) { error in
            commit.resolve(committed: error == nil)
            receiver.wake()
            done(error)
        }
    }

    /// Hands `message` to the store and counts it, under its kind, `queued` once durable or `failed`;
    /// `answered` gets the store's answer (``noStore`` at once without a store).
    private nonisolated func enqueue(_ message: StoredMessage, answered: @escaping @Sendable (BusError?) -> Void) {
        let kind = DeliveryKind(rawValue: message.kind) ?? .direct
        guard let store else {
            metrics.routed(kind, .failed)
            return answered(Self.noStore)
        }
        store.enqueue(message) { [self] error in
            metrics.routed(kind, error == nil ? .queued : .failed)
            answered(error)
        }
    }

    /// Puts the stored messages a session of `key` held when it ended back in `key`'s backlog; once
    /// that is durable, the agent's live session (a successor that may have read its backlog
    /// already) reads them. Without it they would wait for their lease.
    nonisolated func release(_ ids: [UInt64], of key: AgentKey) {
        store?.release(ids) { [self] error in
            if error == nil { arrived(for: key) }
        }
    }

    /// The refusal of a message that must be stored, by a bus without a store.
    nonisolated static let noStore = BusError(
        .unavailable, "messages are stored in PostgreSQL, and the bus runs without")

    /// A stored message for `key` is durable: `key`'s live session is told to read it,
    /// before the sender hears of it. A session whose gate the store held reads it when the hold
    /// ends; another one (the agent was offline, or connected again since) holds its gate first.
    private nonisolated func arrived(for key: AgentKey, holding gate: AgentSession? = nil) {
        if let live = routing.session(for: key) {
            if live !== gate { live.backlogArrived() }
        } else {
            cluster?.stored(for: key)
        }
        gate?.backlogHoldEnded()
    }

    /// How many agents of `tenant` are registered and how many are online.
    public nonisolated func agentCounts(of tenant: String) -> (registered: Int, online: Int) {
        (registry.count(of: tenant), routing.members(of: tenant).sessions.count)
    }

    /// Sessions online now, their deliveries queued, and the agents registered, across tenants.
    public nonisolated var load: (sessions: Int, queuedDeliveries: Int, registered: Int) {
        let sessions = routing.all
        return (sessions.count, sessions.reduce(0) { $0 + $1.mailbox.messageCount }, registry.count(of: nil))
    }
}

extension String? {
    /// `detail`, with `by` added when there is an operator.
    fileprivate func details(_ detail: [String: String] = [:]) -> [String: String] {
        guard let self else { return detail }
        return detail.merging(["by": self]) { $1 }
    }
}
