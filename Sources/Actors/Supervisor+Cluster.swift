import Bus
import NIOCore
import Synchronization

/// What this node does with the records other nodes of its cluster send it (docs/cluster.md), and
/// the answers its agents give to requests from other nodes.
extension Supervisor {
    /// Starts taking the records other nodes send this one; call once, after the restore.
    public nonisolated func joinCluster() {
        cluster?.start { [weak self] record in
            self?.receive(record)
        } load: { [weak self] in
            let load = self?.load
            return ClusterMember.Load(sessions: load?.sessions ?? 0, queuedDeliveries: load?.queuedDeliveries ?? 0)
        } capable: { [weak self] in
            self?.routing.capableLoads() ?? [:]
        }
    }

    /// One record from another node, on the cluster's inbound thread, in the order that node sent them.
    nonisolated func receive(_ record: ClusterRecord) {
        let key = AgentKey(tenant: record.tenant, agentID: record.to)
        switch record.kind {
        case .direct:
            deliver(record, to: key)
        case .request:
            deliverRequest(record, to: key)
        case .response:
            let (number, local) = CorrelationTable<Void>.split(record.correlationID)
            let status = ReplyStatus(rawValue: record.status) ?? .error
            guard let requester = routing.session(number: number), requester.identity.tenant == record.tenant,
                (try? requester.enqueue(
                    .response(local: local, from: record.from, status: status, payload: record.payload))) != nil
            else { return lateReply(from: AgentKey(tenant: record.tenant, agentID: record.from)) }
        case .requestFailed:
            let (number, local) = CorrelationTable<Void>.split(record.correlationID)
            guard let requester = routing.session(number: number), requester.identity.tenant == record.tenant
            else { return }
            try? requester.enqueue(.requestFailed(local: local, BusError(record.code, record.message)))
        case .backlog:
            routing.session(for: key)?.backlogArrived()
        case .fanout, .durableFanout:
            fanOut(record)
        case .fanoutAnswer:
            let (number, local) = CorrelationTable<Void>.split(record.correlationID)
            guard let sender = routing.session(number: number), sender.identity.tenant == record.tenant else { return }
            let refused = record.count == 0 && record.code != .internal ? BusError(record.code, record.message) : nil
            sender.onLoop { $0.fanoutAnswered(local, taken: record.count, refused: refused) }
        case .registered:
            var frame = record.payload
            guard case .register(let register) = try? Frame.decode(from: &frame, maxFrameBytes: .max) else { return }
            _ = registry.register(AgentKey(tenant: record.tenant, agentID: record.from), register.description)
            routing.setCapabilities(
                register.description.capabilities, for: AgentKey(tenant: record.tenant, agentID: record.from))
        case .contextWrite:
            writeContext(record)
        case .contextWritten:
            contextWritten(record)
        case .contextCommitted:
            applyCommitted(record)
        case .streamOpen, .streamPart:
            receiveStream(record)
        case .streamDelivered:
            streamDelivered(record)
        case .uploadFetch:
            handOverUpload(record)
        case .uploadFound:
            uploadFound(record)
        case .uploadPart:
            receiveHandedPart(record)
        case .interest, .interestSet, .interestApplied:
            interest?.receive(record)
        case .receiverFull:
            let now = MonotonicClock.nowMs()
            fullReceivers.withLock { full in
                // Kept small: what has passed goes whenever one is added.
                full = full.filter { $0.value > now }
                full[key] = now + UInt64(record.count)
            }
        case .credit:
            guard let sender = routing.session(number: UInt32(truncatingIfNeeded: record.correlationID)),
                sender.identity.tenant == record.tenant
            else { return }
            sender.onLoop { $0.creditReturned(Int(record.count), from: record.node) }
        case .contextReload:
            reloadContexts(of: record.tenant) { _ in }
        case .unregistered:
            let agent = AgentKey(tenant: record.tenant, agentID: record.from)
            _ = registry.unregister(agent)
            routing.setCapabilities([], for: agent)
        case .takeover:
            if let session = routing.session(for: key) {
                guard session.openedAtMs <= record.at else { return }
                session.movedTo.withLock { $0 = record.node }
                session.closeSoon(
                    GoAway(code: .replaced, message: "another connection of \(key.agentID) took over on another node"))
            }
            // Its session here had ended (maybe just now, see ``retire``): what was kept for its
            // next session here goes to its new node.
            if routing.session(for: key) == nil { handOverOrphans(of: key, to: record.node) }
        }
    }

    /// Hands what is kept for `key`'s next session here (the streams its ended sessions held) to
    /// its session on `node`.
    nonisolated func handOverOrphans(of key: AgentKey, to node: String) {
        storeMoved(routing.takeOrphans(of: key), of: key, streamsTo: node)
    }

    /// A SEND from another node, already answered there (OK `delivered`): to the agent's session if
    /// it is here and takes it now, else stored for it, in order behind anything it holds back. The
    /// sender's credit goes back when the session takes it, or at once when it is stored.
    private nonisolated func deliver(_ record: ClusterRecord, to key: AgentKey) {
        let sender = remoteSender(of: record)
        guard let session = routing.session(for: key) else {
            return storeForwarded(record, to: key, holding: nil, credit: sender)
        }
        let envelope = Envelope.message(
            Message(
                kind: .direct, from: record.from, deadline: record.deadline, payload: record.payload,
                credit: sender.map { .remote($0) }))
        do throws(BusError) {
            if try session.enqueueDirect(envelope, mustStore: false) { return }
            // Behind stored messages it has still to read: stored behind them, as a SEND from this
            // node would be; the sender is not slowed (a full queue slows it, below).
            storeForwarded(record, to: key, holding: session, credit: sender)
        } catch  where error.code == .overloaded {
            // The receiver is full. Its sender heard OK: it goes in all the same, behind what is
            // queued (stored, it would be read back ahead of it), up to twice the queue's bound,
            // while the sender's node stops sending to it; beyond that it is stored, its gate held.
            receiverFull(record)
            if (try? session.enqueueDirect(envelope, mustStore: false, overflow: true)) == true { return }
            let heldGate = (try? session.enqueueDirect(envelope, mustStore: true)) == false
            storeForwarded(record, to: key, holding: heldGate ? session : nil, credit: sender)
        } catch {
            storeForwarded(record, to: key, holding: nil, credit: sender)
        }
    }

    /// The send window on another node that forwarded SEND `record` counts against; nil if none.
    private nonisolated func remoteSender(of record: ClusterRecord) -> RemoteSender? {
        guard record.correlationID != 0, let cluster else { return nil }
        let key = RemoteSender.Key(node: record.node, number: UInt32(truncatingIfNeeded: record.correlationID))
        return remoteSenders.withLock { senders in
            if let sender = senders[key], sender.tenant == record.tenant { return sender }
            // Kept only to batch their credit: senders that ended go with the lot.
            if senders.count >= 4_096 { senders.removeAll() }
            let sender = RemoteSender(key, tenant: record.tenant, link: cluster)
            senders[key] = sender
            return sender
        }
    }

    /// Stores a forwarded SEND for `key` (its sender heard OK already), and gives its sender's
    /// `credit` back at once (the message left the queues): what the store refuses is dead-lettered.
    private nonisolated func storeForwarded(
        _ record: ClusterRecord, to key: AgentKey, holding gate: AgentSession?, credit: RemoteSender?
    ) {
        credit?.give(1)
        let message = storedMessage(
            to: key, from: record.from, payload: Array(record.payload.readableBytesView), deadline: record.deadline)
        enqueueStored(message, holding: gate) { [self] error in
            guard let error else { return }
            deadLetter(
                .message(
                    Message(
                        kind: .direct, from: record.from, deadline: record.deadline, payload: record.payload,
                        credit: nil)),
                to: key, reason: error.code)
        }
    }

    /// Deliveries a closed session held that must reach its agent on whichever node it is now: a
    /// session of the agent on `node` took over, or, in a cluster, none here did (`node` nil, and
    /// only messages). Each message is stored for the agent (kind and topic kept), which its node
    /// then reads; a stream is relayed to `node`, whose session downloads it anew (the receiver may
    /// skip the chunks it kept, docs/protocol.md 5.9). The stored ones it held are back in the
    /// backlog already (``release(_:of:)``); what cannot be stored or relayed is dead-lettered.
    nonisolated func storeMoved(_ orphans: [Envelope], of key: AgentKey, streamsTo node: String?) {
        for envelope in orphans {
            switch envelope {
            case .message(let message):
                let stored = storedMessage(
                    to: key, from: message.from, kind: message.kind, subject: message.subject,
                    payload: Array(message.payload.readableBytesView), deadline: message.deadline)
                enqueueStored(stored, holding: nil) { [self] error in
                    if let error { deadLetter(envelope, to: key, reason: error.code) }
                }
            case .stream(let stream):
                guard let node else {
                    deadLetter(envelope, to: key, reason: .offline)
                    continue
                }
                let sender = AgentKey(tenant: key.tenant, agentID: stream.from)
                relayStream(stream.open, file: stream.file, from: sender, to: key.agentID, at: node) { [self] error in
                    if let error { deadLetter(envelope, to: key, reason: error.code) }
                }
            default:
                deadLetter(envelope, to: key, reason: .offline)
            }
        }
    }

    /// Tells the other nodes that `key` registered with `description` (nil: unregistered), so that
    /// their registries (DISCOVER, capabilities, messages stored for it) know it without a restart.
    nonisolated func announce(_ key: AgentKey, _ description: AgentDescription?) {
        guard let cluster else { return }
        var record = ClusterRecord(kind: .unregistered, node: cluster.nodeID, tenant: key.tenant, from: key.agentID)
        if let description {
            record.kind = .registered
            Frame.register(Register(ref: 0, description: description)).encode(into: &record.payload)
        }
        for node in cluster.otherNodes { cluster.forward(record, to: node) { _ in } }
    }

    /// The ready agent of `tenant` offering `capability` whose session is on another node with the
    /// fewest deliveries in flight, as the nodes last reported (the first by id among equals), its
    /// node and that load. One whose node has not reported it yet (registered a moment ago) counts
    /// as loaded at `UInt32.max`: taken only when there is no other; one reported not ready is not
    /// taken.
    nonisolated func remoteAgent(tenant: String, capability: String) -> (agentID: String, node: String, load: UInt32)? {
        guard let cluster else { return nil }
        var best: (agentID: String, node: String, load: UInt32)?
        for agentID in routing.capable(tenant: tenant, capability: capability).sorted() {
            let key = AgentKey(tenant: tenant, agentID: agentID)
            let load: UInt32
            switch cluster.remoteLoad(of: key) {
            case .ready(let inFlight): load = inFlight
            case .notReady: continue
            case nil: load = .max
            }
            guard best.map({ load < $0.load }) ?? true, let node = cluster.node(of: key) else { continue }
            best = (agentID, node, load)
        }
        return best
    }

    /// A BROADCAST or PUBLISH from another node: to this node's members of the tenant or matching
    /// subscribers (full ones skipped, as on one node), stored first when durable, and their count
    /// back to its node.
    private nonisolated func fanOut(_ record: ClusterRecord) {
        guard let cluster, let kind = DeliveryKind(rawValue: record.status) else { return }
        let receivers =
            kind == .topic
            ? routing.subscribers(tenant: record.tenant, topic: record.subject).sessions
            : routing.members(of: record.tenant).sessions
        let answer: @Sendable (UInt32, BusError?) -> Void = { taken, error in
            cluster.forward(
                ClusterRecord(
                    kind: .fanoutAnswer, node: cluster.nodeID, tenant: record.tenant,
                    correlationID: record.correlationID, count: taken, code: error?.code ?? .internal,
                    message: error?.message ?? ""),
                to: record.node
            ) { _ in }
        }
        guard record.kind == .fanout else {
            return storeFanout(
                kind: kind, from: record.from, subject: record.subject, deadline: record.deadline,
                payload: record.payload, for: receivers, done: answer)
        }
        let envelope = Envelope.message(
            Message(
                kind: kind, from: record.from, subject: record.subject, deadline: record.deadline,
                payload: record.payload, credit: nil))
        var taken: UInt32 = 0
        for receiver in receivers where (try? receiver.enqueue(envelope)) != nil { taken += 1 }
        answer(taken, nil)
    }

    /// The copies of a durable BROADCAST or PUBLISH for `receivers` of this node: each stored
    /// (handed out) and placed in its mailbox like a durable SEND; a receiver whose mailbox is full
    /// is skipped, as by a plain one. `done` gets, once every copy is answered, how many are stored,
    /// and the last refusal (nil when there was none), on any thread.
    nonisolated func storeFanout(
        kind: DeliveryKind, from: String, subject: String, deadline: UInt64?, payload: ByteBuffer,
        for receivers: [AgentSession], done: @escaping @Sendable (UInt32, BusError?) -> Void
    ) {
        guard !receivers.isEmpty else { return done(0, nil) }
        let bytes = Array(payload.readableBytesView)
        let tally = FanoutStores(receivers: receivers.count)
        let answered: @Sendable (BusError?) -> Void = { error in
            guard let (stored, error) = tally.answered(error) else { return }
            done(stored, error)
        }
        for receiver in receivers {
            let stored = storedMessage(
                to: receiver.identity.key, from: from, kind: kind, subject: subject, payload: bytes,
                deadline: deadline, handedOut: true)
            let commit = DurableCommit()
            let copy = Message(
                kind: kind, from: from, subject: subject, deadline: deadline, payload: payload, storedID: stored.id,
                credit: nil, commit: commit)
            do throws(BusError) {
                try receiver.enqueue(.message(copy))
                enqueueHandedOut(stored, commit: commit, to: receiver, done: answered)
            } catch {
                answered(error)  // full, or just closed: skipped, not stored
            }
        }
    }

    /// How long a node refuses SENDs to an agent on another node after that node found it full.
    static let fullReceiverPauseMs = 100

    /// A SEND from another node found its receiver's queue full: that node refuses the next SENDs
    /// to it for a moment, as this node would, so what the receiver has to catch up on stays small.
    private nonisolated func receiverFull(_ record: ClusterRecord) {
        guard let cluster else { return }
        cluster.forward(
            ClusterRecord(
                kind: .receiverFull, node: cluster.nodeID, tenant: record.tenant, to: record.to,
                count: UInt32(Self.fullReceiverPauseMs)),
            to: record.node
        ) { _ in }
    }

    /// Whether `key`, on another node, was found full a moment ago: SENDs to it are refused with
    /// `overloaded` until then, as its own node refuses them while its queue is full.
    nonisolated func isFullElsewhere(_ key: AgentKey) -> Bool {
        guard let until = fullReceivers.withLock({ $0[key] }) else { return false }
        return until > MonotonicClock.nowMs()
    }

    /// A REQUEST from another node: to the responder's session here, under a local number whose
    /// answer goes back to the requester's node; refused back there if it cannot be.
    private nonisolated func deliverRequest(_ record: ClusterRecord, to key: AgentKey) {
        do throws(BusError) {
            guard let responder = routing.session(for: key) else {
                throw BusError(.offline, "\(key.agentID) is offline")
            }
            guard !responder.isDraining, responder.load.readiness != .draining else {
                throw BusError(.unavailable, "\(key.agentID) is draining")
            }
            let origin = RemoteRequests.Origin(
                node: record.node, tenant: record.tenant, correlationID: record.correlationID,
                deadline: record.deadline ?? WallClock.nowMs() + configuration.defaultRequestTimeoutMs)
            guard let number = remoteRequests.insert(origin) else {
                throw BusError(.overloaded, "too many requests from other nodes in flight", retryAfterMs: 100)
            }
            let message = Message(
                kind: .request, from: record.from,
                correlationID: CorrelationTable<Void>.wireID(session: 0, local: number), deadline: origin.deadline,
                payload: record.payload)
            do throws(BusError) {
                try responder.enqueue(.message(message))
            } catch {
                _ = remoteRequests.take(number)
                throw error
            }
        } catch {
            failRemoteRequest(node: record.node, tenant: record.tenant, correlationID: record.correlationID, error)
        }
    }

    /// The answer of `responder` to request `number` from another node (correlation id session 0):
    /// to the requester's node. - Returns: false if nobody waits for it any more.
    nonisolated func answerRemote(_ number: UInt32, from responder: AgentKey, status: ReplyStatus, payload: ByteBuffer)
        -> Bool
    {
        guard let cluster, let origin = remoteRequests.take(number), origin.tenant == responder.tenant else {
            return false
        }
        cluster.forward(
            ClusterRecord(
                kind: .response, node: cluster.nodeID, tenant: origin.tenant, from: responder.agentID,
                correlationID: origin.correlationID, status: status.rawValue, payload: payload),
            to: origin.node
        ) { _ in }
        return true
    }

    /// Request `number` from another node will get no answer from its responder here.
    nonisolated func failRemote(_ number: UInt32, _ error: BusError) {
        guard let origin = remoteRequests.take(number) else { return }
        failRemoteRequest(node: origin.node, tenant: origin.tenant, correlationID: origin.correlationID, error)
    }

    private nonisolated func failRemoteRequest(node: String, tenant: String, correlationID: UInt64, _ error: BusError) {
        guard let cluster else { return }
        cluster.forward(
            ClusterRecord(
                kind: .requestFailed, node: cluster.nodeID, tenant: tenant, correlationID: correlationID,
                code: error.code, message: error.message),
            to: node
        ) { _ in }
    }
}
