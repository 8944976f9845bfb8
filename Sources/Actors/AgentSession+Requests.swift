import Bus
import NIOCore

extension AgentSession {
    /// REQUEST: route like a SEND, remember it with a deadline, answer with RESPONSE or ERROR.
    func handleRequest(_ request: Send) {
        if let scoped = sharedKeyToAsk(request.idempotencyKey) {
            return awaitSharedKey(scoped, request.idempotencyKey) { $0.handleRequest(request) }
        }
        do throws(BusError) {
            let now = WallClock.nowMs()
            try checkInline(request.payload)
            let deadline = try requestDeadline(request.deadline, now: now)
            guard request.flags.isEmpty else {
                // Its answer is the RESPONSE, to a requester that a crash disconnects: nothing to keep.
                throw BusError(
                    .invalidArgument, "a REQUEST takes no flags (a durable request: use an idempotency key, 5.5)")
            }
            switch try beginIdempotent(request.idempotencyKey) {
            case .answered(.response(let from, let status, let payload)):
                return write(.response(Response(ref: request.ref, from: from, status: status, payload: payload)))
            case .answered(.ok):
                throw BusError(.conflict, "idempotency key was used for a send")
            case .run(let scoped):
                do throws(BusError) {
                    try dispatch(request, deadline: deadline, scopedKey: scoped)
                    routed.add(.request)
                } catch {
                    forgetIdempotencyKey(scoped)
                    throw error
                }
            }
        } catch {
            supervisor.metrics.routed(.request, .failed)
            fail(request.ref, error)
        }
    }

    /// Routes a request to its responder, here or on another node, and times it out at `deadline`.
    private func dispatch(_ request: Send, deadline: UInt64, scopedKey: String) throws(BusError) {
        let responder: AgentSession
        do throws(BusError) {
            responder = try resolve(request.target)
        } catch {
            if let remote = remote(request.target) {
                return try dispatch(request, to: remote, deadline: deadline, scopedKey: scopedKey)
            }
            guard request.target.kind == .agent, supervisor.cluster != nil else { throw error }
            // Perhaps connected to a node this one has not heard of yet: asked afresh.
            return lookUp(request.target.name) { session, node in
                do throws(BusError) {
                    guard let node else { throw error }
                    try session.dispatch(
                        request, to: (request.target.name, node), deadline: deadline, scopedKey: scopedKey)
                } catch {
                    session.forgetIdempotencyKey(scopedKey)
                    session.supervisor.metrics.routed(.request, .failed)
                    session.fail(request.ref, error)
                }
            }
        }
        guard !responder.isDraining, responder.load.readiness != .draining else {
            throw BusError(.unavailable, "\(responder.identity.agentID) is draining")
        }
        let local = try pend(request, responder: responder.identity.agentID, deadline: deadline, scopedKey: scopedKey)
        let message = Message(
            kind: .request, from: identity.agentID,
            correlationID: CorrelationTable<PendingRequest>.wireID(session: number, local: local), deadline: deadline,
            payload: request.payload)
        do throws(BusError) {
            try responder.enqueue(.message(message))
        } catch {
            _ = requests.remove(local)?.timer?.cancel()
            throw error
        }
    }

    /// Routes a request to its responder on another node; a refusal of the transport fails it.
    private func dispatch(
        _ request: Send, to remote: (agentID: String, node: String), deadline: UInt64, scopedKey: String
    ) throws(BusError) {
        guard let cluster = supervisor.cluster else { return }
        let local = try pend(request, responder: remote.agentID, deadline: deadline, scopedKey: scopedKey)
        let record = ClusterRecord(
            kind: .request, node: cluster.nodeID, tenant: identity.tenant, to: remote.agentID,
            from: identity.agentID,
            correlationID: CorrelationTable<PendingRequest>.wireID(session: number, local: local),
            deadline: deadline, payload: request.payload)
        cluster.forward(record, to: remote.node) { error in
            guard let error else { return }
            self.onLoop { session in
                session.failRequest(local: local, error)
                session.flushSoon()
            }
        }
    }

    /// Remembers `request` as pending on `responder` until `deadline`, when it times out.
    private func pend(_ request: Send, responder: String, deadline: UInt64, scopedKey: String) throws(BusError)
        -> UInt32
    {
        let local = try requests.insert(
            PendingRequest(ref: request.ref, responder: responder, idempotencyKey: scopedKey))
        let delay = TimeAmount.milliseconds(Int64(deadline) - Int64(WallClock.nowMs()))
        requests[local]?.timer = channel.eventLoop.scheduleTask(in: delay) { [self] in
            assumeIsolated { $0.expireRequest(local) }
        }
        return local
    }

    private func requestDeadline(_ asked: UInt64?, now: UInt64) throws(BusError) -> UInt64 {
        guard let asked else { return now + configuration.defaultRequestTimeoutMs }
        try checkDeadline(asked, now: now)
        return min(asked, now + configuration.maxRequestTimeoutMs)
    }

    private func expireRequest(_ local: UInt32) {
        guard let pending = requests.remove(local) else { return }
        forgetIdempotencyKey(pending.idempotencyKey)
        fail(pending.ref, BusError(.timeout, "no reply from \(pending.responder) before the deadline"))
        flush()
    }

    /// REPLY from this agent as a responder: hand it to the requester's session, in this tenant only.
    /// A reply nobody waits for any more is dropped and counted.
    func handleReply(_ reply: Reply) {
        do throws(BusError) {
            try checkInline(reply.payload)
        } catch {
            return fail(0, error)
        }
        let (session, local) = CorrelationTable<PendingRequest>.split(reply.correlationID)
        if session == 0 {
            // A request from another node of the cluster.
            guard supervisor.answerRemote(local, from: identity.key, status: reply.status, payload: reply.payload)
            else { return supervisor.lateReply(from: identity.key) }
            return
        }
        guard let requester = supervisor.routing.session(number: session),
            requester.identity.tenant == identity.tenant,
            (try? requester.enqueue(
                .response(
                    local: local, from: identity.agentID, status: reply.status,
                    payload: reply.payload))) != nil
        else { return supervisor.lateReply(from: identity.key) }
    }

    /// A reply reached this session, the requester.
    func complete(local: UInt32, from: String, status: ReplyStatus, payload: ByteBuffer) {
        guard let pending = requests[local], pending.responder == from else {
            return supervisor.lateReply(from: AgentKey(tenant: identity.tenant, agentID: from))
        }
        _ = requests.remove(local)
        pending.timer?.cancel()
        supervisor.metrics.requestAnswered(afterNanoseconds: NIODeadline.now().uptimeNanoseconds - pending.startedNs)
        if !pending.idempotencyKey.isEmpty {
            // Kept for a minute: a copy, not a slice that would pin the whole read buffer.
            let kept = ByteBuffer(bytes: payload.readableBytesView)
            completeIdempotent(pending.idempotencyKey, .response(from: from, status: status, payload: kept))
        }
        write(.response(Response(ref: pending.ref, from: from, status: status, payload: payload)))
    }

    /// This session's request `local` cannot be answered.
    func failRequest(local: UInt32, _ error: BusError) {
        guard let pending = requests.remove(local) else { return }
        pending.timer?.cancel()
        forgetIdempotencyKey(pending.idempotencyKey)
        fail(pending.ref, error)
    }

    /// Tells the requester of a request this session received that it will get no reply.
    func failRequester(of message: Message, _ error: BusError) {
        let (session, local) = CorrelationTable<PendingRequest>.split(message.correlationID)
        if session == 0 { return supervisor.failRemote(local, error) }
        guard let requester = supervisor.routing.session(number: session) else { return }
        try? requester.enqueue(.requestFailed(local: local, error))
    }
}
