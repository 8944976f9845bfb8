import Bus
import NIOCore

/// BROADCAST and PUBLISH across the nodes of a cluster (docs/cluster.md): a copy to each other node
/// with agents of the tenant, which fans it out to its own sessions and answers how many took it.
extension AgentSession {
    /// How long a fan-out waits for the other nodes' counts before it is answered without them.
    static let fanoutAnswerTimeout = TimeAmount.seconds(5)

    /// Sends `fanout` to `nodes` once this node's receivers were offered it (`taken` took it);
    /// OK `delivered` with every node's count follows their answers. Under protocol 2 it is an OK
    /// too, not a CONFIRM, and CONFIRM stops short of it meanwhile.
    func forward(
        _ fanout: Fanout, kind: DeliveryKind, pending local: UInt32, to nodes: [String], taken: UInt32
    ) {
        guard let cluster = supervisor.cluster else { return }
        fanouts[local]?.taken = taken
        if sendWindow != nil { refs.storing(fanout.ref) }
        let record = ClusterRecord(
            kind: fanouts[local]?.durable == true ? .durableFanout : .fanout, node: cluster.nodeID,
            tenant: identity.tenant, from: identity.agentID,
            subject: fanout.topic, correlationID: CorrelationTable<PendingFanout>.wireID(session: number, local: local),
            deadline: fanout.deadline, status: kind.rawValue, payload: fanout.payload)
        for node in nodes {
            cluster.forward(record, to: node) { error in
                guard let error else { return }
                self.onLoop { $0.fanoutAnswered(local, taken: 0, refused: error) }
            }
        }
        fanouts[local]?.timer = channel.eventLoop.scheduleTask(in: Self.fanoutAnswerTimeout) { [self] in
            assumeIsolated { session in
                guard let pending = session.fanouts.remove(local) else { return }
                session.answer(pending)
            }
        }
    }

    /// One node answered fan-out `local` of this session (`refused`: why it took none).
    func fanoutAnswered(_ local: UInt32, taken: UInt32, refused: BusError? = nil) {
        guard var pending = fanouts[local] else { return }
        pending.taken += taken
        if let refused { pending.refused = refused }
        pending.waiting -= 1
        guard pending.waiting == 0 else {
            fanouts[local] = pending
            return
        }
        _ = fanouts.remove(local)
        pending.timer?.cancel()
        answer(pending)
    }

    /// OK `delivered` (durable: `queued`, or the last refusal when none stored it) with the
    /// receivers counted so far (a node that did not answer counts none).
    private func answer(_ pending: PendingFanout) {
        guard !pending.durable else {
            return answerStored(
                pending.ref, scopedKey: "", recipients: pending.taken, pending.taken == 0 ? pending.refused : nil)
        }
        refs.stored(pending.ref)
        write(.ok(Ok(ref: pending.ref, outcome: .delivered, recipients: pending.taken)))
        flushSoon()
    }
}
