public import Bus
import NIOCore
import Synchronization

extension AgentSession {
    func handleSend(_ send: Send) {
        // The retry closure (a copy of the command) is made only for a key Redis must be asked about.
        if let scoped = sharedKeyToAsk(send.idempotencyKey) {
            return awaitSharedKey(scoped, send.idempotencyKey) { $0.handleSend(send) }
        }
        do throws(BusError) {
            try checkInline(send.payload)
            try checkDeadline(send.deadline)
            let durable = try isDurable(send.flags)
            let key = try beginIdempotent(send.idempotencyKey)
            switch key {
            case .answered(.ok(let outcome, let recipients)):
                sendWindow?.give(1)
                return succeeded(send.ref, outcome, recipients: recipients)
            case .answered(.response):
                throw BusError(.conflict, "idempotency key was used for a request")
            case .run(let scoped):
                do throws(BusError) {
                    let receiver: AgentSession
                    do throws(BusError) {
                        receiver = try resolve(send.target)
                    } catch {
                        let remote = remote(send.target)
                        guard remote == nil, error.code == .unknownAgent, supervisor.cluster != nil else {
                            return try routeMiss(send, error, to: remote, durable: durable, scopedKey: scoped)
                        }
                        // Perhaps connected to a node this one has not heard of yet: asked afresh.
                        // (One registered here but offline is stored, and its node, if any, told.)
                        return lookUp(send.target.name) { session, node in
                            do throws(BusError) {
                                try session.routeMiss(
                                    send, error, to: node.map { (send.target.name, $0) }, durable: durable,
                                    scopedKey: scoped)
                            } catch {
                                session.forgetIdempotencyKey(scoped)
                                session.supervisor.metrics.routed(.direct, .failed)
                                session.fail(send.ref, error)
                            }
                        }
                    }
                    try sendLocally(send, to: receiver, durable: durable, scopedKey: scoped)
                } catch {
                    forgetIdempotencyKey(scoped)
                    throw error
                }
            }
        } catch {
            supervisor.metrics.routed(.direct, .failed)
            fail(send.ref, error)
        }
    }

    /// A SEND to `receiver`, a session of this node: into its mailbox (stored first if durable, or
    /// stored behind the messages it has still to read back). One whose session closed since it was
    /// found goes as a SEND to an agent that is offline (``routeMiss(_:_:to:durable:scopedKey:)``).
    private func sendLocally(_ send: Send, to receiver: AgentSession, durable: Bool, scopedKey: String)
        throws(BusError)
    {
        do throws(BusError) {
            if durable {
                return try storeDurably(send, to: receiver, scopedKey: scopedKey)
            }
            let message = Envelope.message(
                Message(
                    kind: .direct, from: identity.agentID, deadline: send.deadline, payload: send.payload,
                    credit: sendWindow.map { .message($0) }))
            guard try offer(message, of: send, to: receiver) else {
                return storeForLater(send, to: send.target.name, scopedKey: scopedKey, holding: receiver)
            }
        } catch
            where error.code == .offline && send.target.kind == .agent
            && supervisor.registry.isRegistered(receiver.identity.key)
        {
            return try routeMiss(send, error, to: nil, durable: durable, scopedKey: scopedKey)
        }
        completeIdempotent(scopedKey, .ok(.delivered, recipients: 1))
        routed.add(.direct)
        succeeded(send.ref, recipients: 1)
    }

    /// A SEND whose target has no session on this node (`error` says why): to `remote`, an agent on
    /// another node, or stored for the agent it names, or refused with `error`.
    private func routeMiss(
        _ send: Send, _ error: BusError, to remote: (agentID: String, node: String)?, durable: Bool,
        scopedKey: String
    ) throws(BusError) {
        if let remote {
            // On another node: a durable one, or one behind this sender's stores to it, is stored
            // (that node is told); any other goes there now.
            guard durable || stores.isStoring(to: remote.agentID) else {
                guard !supervisor.isFullElsewhere(AgentKey(tenant: identity.tenant, agentID: remote.agentID)) else {
                    throw BusError(.overloaded, "\(remote.agentID) is not keeping up", retryAfterMs: 100)
                }
                return forward(send, to: remote, scopedKey: scopedKey)
            }
            return storeForLater(send, to: remote.agentID, scopedKey: scopedKey, holding: nil)
        }
        guard error.code == .offline, supervisor.store != nil else { throw error }
        storeForLater(send, to: send.target.name, scopedKey: scopedKey, holding: nil)
    }

    /// Whether a SEND, BROADCAST or PUBLISH with `flags` is durable: it asks, or its tenant is
    /// durable by default (docs/protocol.md 5.1b).
    /// - Throws: ``ErrorCode/invalidArgument`` for a flag this version does not know,
    ///   ``ErrorCode/unavailable`` for a durable message on a bus without a store.
    func isDurable(_ flags: MessageFlags) throws(BusError) -> Bool {
        guard MessageFlags.known.isSuperset(of: flags) else {
            throw BusError(.invalidArgument, "unknown flags \(flags.rawValue)")
        }
        guard flags.contains(.durable) || durableByDefault else { return false }
        guard supervisor.store != nil else { throw Supervisor.noStore }
        return true
    }

    /// A durable SEND to a live session: it takes its place in the receiver's mailbox now (so what is
    /// sent after it stays behind it) and is stored as handed out to that session; it is written to
    /// the receiver once committed, and the sender hears OK `queued` then. Where the backlog gate
    /// sends it to the store instead, it takes the path of a message for an offline agent.
    /// - Throws: as ``enqueue(_:)`` (nothing was stored).
    private func storeDurably(_ send: Send, to receiver: AgentSession, scopedKey: String) throws(BusError) {
        let agentID = receiver.identity.agentID
        let stored = supervisor.storedMessage(
            to: receiver.identity.key, from: identity.agentID, payload: Array(send.payload.readableBytesView),
            deadline: send.deadline, idempotencyKey: send.idempotencyKey, handedOut: true)
        let commit = DurableCommit()
        let envelope = Envelope.message(
            Message(
                kind: .direct, from: identity.agentID, deadline: send.deadline, payload: send.payload,
                storedID: stored.id, credit: nil, commit: commit))
        guard try offer(envelope, of: send, to: receiver) else {
            return storeForLater(send, to: agentID, scopedKey: scopedKey, holding: receiver)
        }
        if sendWindow != nil { refs.storing(send.ref) }
        supervisor.enqueueHandedOut(stored, commit: commit, to: receiver) { error in
            self.onLoop { $0.answerStored(send.ref, scopedKey: scopedKey, recipients: 1, error) }
        }
    }

    /// Offers `envelope` of `send` to `receiver`: a SEND to an agent through the receiver's backlog
    /// gate, since stored messages still to be read back go first (false: it must be stored behind
    /// them); one to a capability straight into the mailbox.
    /// - Throws: as ``enqueue(_:)``.
    private func offer(_ envelope: Envelope, of send: Send, to receiver: AgentSession) throws(BusError) -> Bool {
        guard send.target.kind == .agent else {
            try receiver.enqueue(envelope)
            return true
        }
        let mustStore = !stores.isEmpty && stores.mustStore(to: receiver.identity.agentID, receiver: receiver)
        return try receiver.enqueueDirect(envelope, mustStore: mustStore)
    }

    /// SEND to agent `agentID`, with a store, when it is offline, or behind its stored messages, or
    /// durable (`receiver`, whose backlog gate this store holds): OK `queued` once the message is
    /// durable (committed to the database, or to the store's spool while it is unreachable). Under
    /// protocol 2, CONFIRM waits for that answer, and the send's credit comes back with it.
    private func storeForLater(_ send: Send, to agentID: String, scopedKey: String, holding receiver: AgentSession?) {
        if sendWindow != nil { refs.storing(send.ref) }
        stores.add(to: agentID, holding: receiver)
        let message = supervisor.storedMessage(
            to: AgentKey(tenant: identity.tenant, agentID: agentID), from: identity.agentID,
            payload: Array(send.payload.readableBytesView), deadline: send.deadline,
            idempotencyKey: send.idempotencyKey)
        supervisor.enqueueStored(message, holding: receiver) { error in
            self.onLoop { session in
                session.stores.remove(to: agentID, holding: receiver)
                session.answerStored(send.ref, scopedKey: scopedKey, recipients: 1, error)
            }
        }
    }

    /// SEND to an agent whose session is on another node: OK `delivered` once the cluster's transport
    /// holds it (docs/cluster.md). Under protocol 2, CONFIRM waits for that answer, and the send's
    /// credit comes back with it.
    private func forward(_ send: Send, to remote: (agentID: String, node: String), scopedKey: String) {
        guard let cluster = supervisor.cluster else { return }
        if sendWindow != nil { refs.storing(send.ref) }
        // Under protocol 2 its credit comes back from the receiver's node once the receiver took it.
        let record = ClusterRecord(
            kind: .direct, node: cluster.nodeID, tenant: identity.tenant, to: remote.agentID,
            from: identity.agentID, correlationID: sendWindow == nil ? 0 : UInt64(number), deadline: send.deadline,
            payload: send.payload)
        cluster.forward(record, to: remote.node) { error in
            self.onLoop { session in
                if error == nil {
                    session.routed.add(.direct)
                    if session.sendWindow != nil {
                        session.remoteCredit.lend(to: remote.node, nowMs: MonotonicClock.nowMs())
                    }
                } else {
                    session.supervisor.metrics.routed(.direct, .failed)
                }
                session.answerStored(
                    send.ref, scopedKey: scopedKey, recipients: 1, outcome: .delivered, creditBack: false, error)
            }
        }
    }

    /// Where on another node `target` goes: the agent it names, or one offering the capability it
    /// names, and that agent's node; nil if none.
    func remote(_ target: Target) -> (agentID: String, node: String)? {
        guard let cluster = supervisor.cluster else { return nil }
        switch target.kind {
        case .agent:
            return cluster.node(of: AgentKey(tenant: identity.tenant, agentID: target.name)).map { (target.name, $0) }
        case .capability:
            return supervisor.remoteAgent(tenant: identity.tenant, capability: target.name).map {
                ($0.agentID, $0.node)
            }
        case .context:
            return nil
        }
    }

    /// The store (or the forwarding) of command `ref` was answered: OK `outcome` (with its credit
    /// back, unless `creditBack` is false: it comes later) or ERROR.
    func answerStored(
        _ ref: UInt64, scopedKey: String, recipients: UInt32, outcome: Outcome = .queued, creditBack: Bool = true,
        _ error: BusError?
    ) {
        refs.stored(ref)
        if let error {
            forgetIdempotencyKey(scopedKey)
            fail(ref, error)
        } else {
            completeIdempotent(scopedKey, .ok(outcome, recipients: recipients))
            write(.ok(Ok(ref: ref, outcome: outcome, recipients: recipients)))
            if creditBack { sendWindow?.give(1) }
        }
        // A group commit answers many stores in a row: one flush for them all.
        flushSoon()
    }

    /// BROADCAST (every other live agent of the tenant) and PUBLISH (every matching subscriber).
    /// Receivers whose mailbox is full are skipped; OK counts those that took it. Under protocol 2,
    /// CONFIRM answers a fan-out every receiver took, and OK one that skipped any.
    func handleFanout(_ fanout: Fanout, kind: DeliveryKind) {
        do throws(BusError) {
            try checkInline(fanout.payload)
            try checkDeadline(fanout.deadline)
            let receivers = try fanoutReceivers(kind, topic: fanout.topic)
            // Other nodes with agents of the tenant get a copy each; of a PUBLISH, those with a
            // matching subscriber (or whose subscriptions this node does not know yet).
            let nodes =
                kind == .topic
                ? supervisor.interest?.nodes(for: identity.tenant, topic: fanout.topic) ?? []
                : supervisor.cluster?.nodes(withMembersOf: identity.tenant) ?? []
            // With no receiver there is nothing to store: it is answered (and its credit given back) as a plain one.
            if try isDurable(fanout.flags), !receivers.isEmpty || !nodes.isEmpty {
                return try storeFanout(fanout, kind: kind, for: receivers, nodes: nodes)
            }
            let pending =
                nodes.isEmpty
                ? nil
                : try fanouts.insert(PendingFanout(ref: fanout.ref, taken: 0, waiting: nodes.count))
            let share = sendWindow.map { FanoutCredit(window: $0, receivers: receivers.count) }
            let envelope = Envelope.message(
                Message(
                    kind: kind, from: identity.agentID, subject: fanout.topic, deadline: fanout.deadline,
                    payload: fanout.payload, credit: share.map { .copy($0) }))
            var delivered: UInt32 = 0
            for receiver in receivers where (try? receiver.enqueue(envelope)) != nil { delivered += 1 }
            share?.offered(refused: receivers.count - Int(delivered))
            routed.add(kind)
            if let pending {
                return forward(fanout, kind: kind, pending: pending, to: nodes, taken: delivered)
            }
            if delivered == receivers.count {
                succeeded(fanout.ref, recipients: delivered)
            } else {
                write(.ok(Ok(ref: fanout.ref, outcome: .delivered, recipients: delivered)))
            }
        } catch {
            supervisor.metrics.routed(kind, .failed)
            fail(fanout.ref, error)
        }
    }

    /// The receivers of a BROADCAST (every other live session of the tenant) or of a PUBLISH (the
    /// subscribers of its topic). Kept while the routing table is unchanged: a publisher usually
    /// sends to the same topics, and this spares it the table's lock, the topic's validation and
    /// the lookup's dozen allocations.
    private func fanoutReceivers(_ kind: DeliveryKind, topic: String) throws(BusError) -> [AgentSession] {
        let routing = supervisor.routing
        if let last = lastFanout, last.kind == kind, last.topic == topic, !routing.changed(since: last.at) {
            return last.receivers
        }
        let found: (sessions: [AgentSession], at: UInt64)
        if kind == .topic {
            try Topic.validate(topic)
            found = routing.subscribers(tenant: identity.tenant, topic: topic)
        } else {
            guard topic.isEmpty else { throw BusError(.invalidArgument, "a broadcast has no topic") }
            let members = routing.members(of: identity.tenant)
            found = (members.sessions.filter { $0 !== self }, members.at)
        }
        lastFanout = (kind, topic, found.at, found.sessions)
        return found.sessions
    }

    /// A durable BROADCAST or PUBLISH: a stored copy for each receiver that takes it, here
    /// (``Supervisor/storeFanout(kind:from:subject:deadline:payload:for:done:)``) and on `nodes`.
    /// OK `queued` once every copy is answered, `recipients` counting the stored ones; ERROR when
    /// none could be taken or stored.
    private func storeFanout(_ fanout: Fanout, kind: DeliveryKind, for receivers: [AgentSession], nodes: [String])
        throws(BusError)
    {
        let store = { (done: @escaping @Sendable (UInt32, BusError?) -> Void) in
            self.supervisor.storeFanout(
                kind: kind, from: self.identity.agentID, subject: fanout.topic, deadline: fanout.deadline,
                payload: fanout.payload, for: receivers, done: done)
        }
        guard !nodes.isEmpty else {
            if sendWindow != nil { refs.storing(fanout.ref) }
            return store { stored, error in
                self.onLoop {
                    $0.answerStored(fanout.ref, scopedKey: "", recipients: stored, stored == 0 ? error : nil)
                }
            }
        }
        // This node's copies are one more answer the fan-out waits for, beside the other nodes'.
        let local = try fanouts.insert(
            PendingFanout(ref: fanout.ref, taken: 0, waiting: nodes.count + 1, durable: true))
        forward(fanout, kind: kind, pending: local, to: nodes, taken: 0)
        store { stored, error in self.onLoop { $0.fanoutAnswered(local, taken: stored, refused: error) } }
    }

    /// Offers `envelope` to this session's mailbox, from any thread.
    /// - Throws: ``ErrorCode/overloaded`` when the mailbox is full, ``ErrorCode/offline`` once closed.
    public nonisolated func enqueue(_ envelope: Envelope) throws(BusError) {
        switch mailbox.offer(envelope) {
        case .accepted(let wake):
            if wake { scheduleDrain() }
        case .full:
            throw overloaded
        case .closed:
            throw justClosed
        }
    }

    /// Offers a direct message (SEND by agent id) through the backlog gate, from any thread.
    /// - Returns: false if the caller must store it instead (it then holds the gate: the store's
    ///   completion releases it, see ``Supervisor/enqueueStored(_:holding:done:)``).
    /// - Throws: as ``enqueue(_:)``.
    nonisolated func enqueueDirect(_ envelope: Envelope, mustStore: Bool, overflow: Bool = false) throws(BusError)
        -> Bool
    {
        switch mailbox.offerDirect(envelope, mustStore: mustStore, overflow: overflow) {
        case .accepted(let wake):
            if wake { scheduleDrain() }
            return true
        case .store:
            return false
        case .full:
            throw overloaded
        case .closed:
            throw justClosed
        }
    }

    private nonisolated var overloaded: BusError {
        BusError(.overloaded, "\(identity.agentID) is not keeping up", retryAfterMs: 100)
    }

    private nonisolated var justClosed: BusError { BusError(.offline, "\(identity.agentID) just disconnected") }

    /// Hands deliveries back ahead of anything newer (after a reconnect, a takeover or a retry).
    /// - Returns: false if the session has closed and did not take them.
    @discardableResult
    nonisolated func requeue(_ envelopes: [Envelope]) -> Bool {
        guard case .accepted(let wake) = mailbox.requeueFront(envelopes) else { return false }
        if wake { scheduleDrain() }
        return true
    }

    /// Wakes the session to write what its mailbox holds, from any thread, unless a wake is already
    /// on its way (so a group commit's completions share one drain).
    nonisolated func wake() {
        if mailbox.needsWake() { scheduleDrain() }
    }

    /// Resumes writing, in a task of its own on the session's event loop: for a message offered
    /// from another thread, and when the connection became writable again (its outbound buffer fell
    /// below the low-water mark).
    ///
    /// NIO reports writability from inside a write or flush: a write that crosses the high-water mark is
    /// flushed at once by the `BackPressureHandler`, and that flush can empty the buffer, i.e. from
    /// inside the session's own call to the channel. A drain run there would nest in whatever the
    /// session was doing, and one that writes past the mark again would nest once more, a level per
    /// few MiB written.
    public nonisolated func scheduleDrain() {
        channel.eventLoop.execute { self.assumeIsolated { $0.drain() } }
    }

    /// The live session a target names, in the caller's tenant only.
    func resolve(_ target: Target) throws(BusError) -> AgentSession {
        if target.kind == .agent, let route = lastRoute, route.agentID == target.name, !route.session.isDraining {
            return route.session
        }
        try Identifier.validate(target.name, field: "target.name")
        switch target.kind {
        case .agent:
            let key = AgentKey(tenant: identity.tenant, agentID: target.name)
            if let session = supervisor.routing.session(for: key) {
                lastRoute = (target.name, session)
                return session
            }
            throw supervisor.registry.isRegistered(key)
                ? BusError(.offline, "\(target.name) is offline") : supervisor.unknown(key)
        case .capability:
            let session = supervisor.routing.leastLoaded(
                tenant: identity.tenant, capability: target.name, excluding: number)
            // In a cluster, a less loaded agent on another node wins: the caller then goes there
            // (``remote(_:)``); on a tie, this node's.
            if let remote = supervisor.remoteAgent(tenant: identity.tenant, capability: target.name),
                session.map({ Int(remote.load) < $0.load.inFlight }) ?? true
            {
                throw BusError(.noCapableAgent, "the least loaded agent offering \(target.name) is on another node")
            }
            guard let session else { throw BusError(.noCapableAgent, "no ready agent offers \(target.name)") }
            return session
        case .context:
            throw BusError(.invalidArgument, "only STREAM_OPEN takes a context target (a context's body)")
        }
    }

    func checkInline(_ payload: ByteBuffer) throws(BusError) {
        let limit = configuration.limits.maxInlinePayload
        guard payload.readableBytes <= Int(limit) else {
            throw BusError(.tooLarge, "payload of \(payload.readableBytes) bytes exceeds \(limit); send it as a stream")
        }
    }

    /// - Parameter now: wall-clock time; read only when there is a deadline, if not given.
    func checkDeadline(_ deadline: UInt64?, now: @autoclosure () -> UInt64 = WallClock.nowMs()) throws(BusError) {
        if let deadline, deadline <= now() { throw BusError(.deadlineExceeded, "the deadline has passed") }
    }
}
