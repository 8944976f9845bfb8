public import Bus
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Where a tenant's contexts are written in a cluster: at one node, their home.
public enum ContextHome: Sendable, Equatable {
    case here
    case node(String)
}

/// Contexts across the nodes of a cluster (docs/cluster.md): every node keeps every tenant's
/// contexts and serves reads and watches from them; writes go to the tenant's home, which decides
/// them as a single node does (compare-and-swap, group commit) and sends each committed version to
/// the other nodes before it answers.
extension Supervisor {
    /// Where `tenant`'s contexts are written now: nil while no live node holds them, or this node is
    /// taking them up. Always here outside a cluster.
    public nonisolated func contextHome(of tenant: String) -> ContextHome? {
        guard let cluster else { return .here }
        guard !contextClaims.withLock({ $0.settling[tenant] != nil }), let node = cluster.contextHome(of: tenant)
        else { return nil }
        guard node == cluster.nodeID else { return .node(node) }
        // Claimed, but not read again: not written here until a claim reads it.
        return contextClaims.withLock { $0.unread.contains(tenant) } ? nil : .here
    }

    /// Settles the home of `tenant`'s contexts: the live node that holds them, or else this one,
    /// which first reads them again from PostgreSQL (the previous home may have committed versions
    /// it never sent) and tells the others to. `then` gets nil when Redis or PostgreSQL cannot be
    /// reached, on any thread.
    nonisolated func claimContexts(of tenant: String, then: @escaping @Sendable (ContextHome?) -> Void) {
        guard let cluster else { return then(.here) }
        let (first, unread) = contextClaims.withLock { claims in
            defer { claims.settling[tenant, default: []].append(then) }
            return (claims.settling[tenant] == nil, claims.unread.contains(tenant))
        }
        guard first else { return }
        let wasHere = !unread && cluster.contextHome(of: tenant) == cluster.nodeID
        cluster.claimContexts(of: tenant) { [self] node in
            guard let node, node == cluster.nodeID, !wasHere else {
                return settled(tenant, node.map { $0 == cluster.nodeID ? .here : .node($0) })
            }
            reloadContexts(of: tenant, claiming: true) { [self] read in
                contextClaims.withLock { claims in
                    if read { claims.unread.remove(tenant) } else { claims.unread.insert(tenant) }
                }
                guard read else { return settled(tenant, nil) }
                let record = ClusterRecord(kind: .contextReload, node: cluster.nodeID, tenant: tenant)
                for other in cluster.otherNodes { cluster.forward(record, to: other) { _ in } }
                settled(tenant, .here)
            }
        }
    }

    /// Tenants whose commits the fence refused (another node claimed their home in PostgreSQL
    /// since this one did) are written here again only after a new claim, in Redis and then in
    /// PostgreSQL, which reads them again too. Called every housekeeping round.
    nonisolated func refenceContexts() {
        guard let fenced = contexts.storage?.takeFenced(), !fenced.isEmpty else { return }
        contextClaims.withLock { $0.unread.formUnion(fenced) }
    }

    /// Answers everyone waiting for the home of `tenant`, in order, those who come meanwhile
    /// included (they see it still settling and queue up), then ends the settling.
    private nonisolated func settled(_ tenant: String, _ home: ContextHome?) {
        while true {
            let waiting = contextClaims.withLock { claims in
                let waiting = claims.settling[tenant] ?? []
                claims.settling[tenant] = waiting.isEmpty ? nil : []
                return waiting
            }
            guard !waiting.isEmpty else { return }
            for then in waiting { then(home) }
        }
    }

    /// Reads `tenant`'s contexts again from storage, on the thread pool, and keeps the versions this
    /// node lacks; `done` gets whether they were read. `claiming`: this node became their home, and
    /// first fences the previous home off in storage (its commits from then on are refused), so the
    /// read sees every commit the previous home will ever make.
    nonisolated func reloadContexts(
        of tenant: String, claiming: Bool = false, done: @escaping @Sendable (Bool) -> Void
    ) {
        guard let storage = contexts.storage else { return done(true) }
        threadPool.submit { [self] state in
            guard state == .active else { return done(false) }
            do {
                if claiming, let cluster { try storage.claimHome(of: tenant, node: cluster.nodeID) }
                contexts.apply(try storage.load(tenant: tenant))
                done(true)
            } catch {
                logger.error(
                    "cannot read a tenant's contexts again", metadata: ["tenant": "\(tenant)", "error": "\(error)"])
                done(false)
            }
        }
    }

    /// What a committed context version does beyond this node: its copy in Redis, and in a cluster
    /// a `contextCommitted` record to every other live node (sent before the writer is answered,
    /// so the writer's node has it first).
    static func contextMirror(shared: (any SharedState)?, cluster: (any ClusterLink)?)
        -> (@Sendable (ContextRecord) -> Void)?
    {
        guard shared != nil || cluster != nil else { return nil }
        return { record in
            shared?.mirrorContext(record)
            guard let cluster else { return }
            var payload = ByteBuffer()
            Frame.context(
                ContextReply(ref: 0, status: .body, head: record.head, body: ByteBuffer(bytes: record.body))
            ).encode(into: &payload)
            let committed = ClusterRecord(
                kind: .contextCommitted, node: cluster.nodeID, tenant: record.tenant, payload: payload)
            // One that Kafka refused is replaced by a word to read the tenant again (if that goes).
            let reload = ClusterRecord(kind: .contextReload, node: cluster.nodeID, tenant: record.tenant)
            for node in cluster.otherNodes {
                cluster.forward(committed, to: node) { error in
                    if error != nil { cluster.forward(reload, to: node) { _ in } }
                }
            }
        }
    }

    /// How long a write forwarded to the tenant's home waits for its answer: past a home's death,
    /// the time its key in the directory takes to expire (3 s), after which a write finds a new home.
    static let remoteContextWriteTimeout = TimeAmount.seconds(5)

    /// Writes `command` for `principal` where the tenant's contexts are written: here (always, outside
    /// a cluster), forwarded to their home on another node, or, with no home yet, here or there once
    /// this node claimed it. Writes of one caller keep their order. `done` runs once committed, or
    /// with why not, on any thread.
    public nonisolated func writeContext(
        _ command: ContextWrite, by principal: ContextPrincipal,
        done: @escaping @Sendable (Result<ContextHead, BusError>) -> Void
    ) {
        if let home = contextHome(of: principal.tenant) { return writeContext(command, by: principal, at: home, done) }
        claimContexts(of: principal.tenant) { [self] home in
            guard let home else {
                return done(
                    .failure(
                        BusError(
                            .unavailable, "the node that writes this tenant's contexts cannot be settled now",
                            retryAfterMs: 1_000)))
            }
            writeContext(command, by: principal, at: home, done)
        }
    }

    /// ``writeContext(_:by:done:)``, awaited. - Returns: the committed version's head.
    public nonisolated func writeContext(_ command: ContextWrite, by principal: ContextPrincipal) async throws
        -> ContextHead
    {
        try await withCheckedThrowingContinuation { continuation in
            writeContext(command, by: principal) { continuation.resume(with: $0) }
        }
    }

    private nonisolated func writeContext(
        _ command: ContextWrite, by principal: ContextPrincipal, at home: ContextHome,
        _ done: @escaping @Sendable (Result<ContextHead, BusError>) -> Void
    ) {
        guard case .node(let node) = home, let cluster else {
            return contexts.write(command, by: principal, done: done)
        }
        guard let number = contextWrites.add(done) else {
            return done(
                .failure(BusError(.overloaded, "too many context writes wait for another node", retryAfterMs: 100)))
        }
        var payload = ByteBuffer()
        Frame.contextWrite(command).encode(into: &payload)
        let record = ClusterRecord(
            kind: .contextWrite, node: cluster.nodeID, tenant: principal.tenant, from: principal.agentID,
            correlationID: number, status: principal.rights, payload: payload)
        MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: Self.remoteContextWriteTimeout) { [self] in
            contextWrites.take(number)?(
                .failure(
                    BusError(
                        .unavailable,
                        "the node that writes this tenant's contexts did not answer in time: the write may or may not have been committed"
                    )))
        }
        cluster.forward(record, to: node) { [self] error in
            guard let error else { return }
            contextWrites.take(number)?(.failure(error))
        }
    }

    /// The answer to a write this node forwarded: the home's CONTEXT or ERROR frame.
    nonisolated func contextWritten(_ record: ClusterRecord) {
        var frame = record.payload
        switch try? Frame.decode(from: &frame, maxFrameBytes: .max) {
        case .context(let reply): contextWrites.take(record.correlationID)?(.success(reply.head))
        case .error(let error): contextWrites.take(record.correlationID)?(.failure(error.error))
        default: return
        }
    }

    /// A CONTEXT_WRITE from another node, for which this node is the tenant's home: decided here,
    /// and the CONTEXT or ERROR frame goes back.
    nonisolated func writeContext(_ record: ClusterRecord) {
        guard let cluster else { return }
        var frame = record.payload
        guard case .contextWrite(let command) = try? Frame.decode(from: &frame, maxFrameBytes: .max) else { return }
        let answer: @Sendable (Frame) -> Void = { frame in
            var payload = ByteBuffer()
            frame.encode(into: &payload)
            cluster.forward(
                ClusterRecord(
                    kind: .contextWritten, node: cluster.nodeID, tenant: record.tenant,
                    correlationID: record.correlationID, payload: payload),
                to: record.node
            ) { _ in }
        }
        guard contextHome(of: record.tenant) == .here else {
            let error = BusError(.unavailable, "this tenant's contexts are moving between nodes", retryAfterMs: 100)
            return answer(.error(ErrorFrame(ref: command.ref, error: error)))
        }
        let principal = ContextPrincipal(tenant: record.tenant, agentID: record.from, rights: record.status)
        contexts.write(command, by: principal) { result in
            switch result {
            case .success(let head): answer(.context(ContextReply(ref: command.ref, status: .head, head: head)))
            case .failure(let error): answer(.error(ErrorFrame(ref: command.ref, error: error)))
            }
        }
    }

    /// A version another node committed as the tenant's home.
    nonisolated func applyCommitted(_ record: ClusterRecord) {
        var frame = record.payload
        guard case .context(let reply) = try? Frame.decode(from: &frame, maxFrameBytes: .max) else { return }
        contexts.apply([
            ContextRecord(tenant: record.tenant, head: reply.head, body: Array(reply.body.readableBytesView))
        ])
    }
}
