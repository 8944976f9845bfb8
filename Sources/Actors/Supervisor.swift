public import Bus
import Foundation
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
import Synchronization

/// The root of the actor tree: it creates and retires sessions and owns what they share — the
/// routing table, the registry, parked uploads and the idempotency window.
///
/// Sessions reach the shared parts directly (each is lock-protected and never awaited), so no
/// message passes through this actor; it only serialises shutdown.
public actor Supervisor {
    public nonisolated let configuration: SupervisorConfiguration
    public nonisolated let routing: RoutingTable
    public nonisolated let registry: Registry
    public nonisolated let streams: StreamStore
    /// Contexts: their versions, watches and lineage.
    public nonisolated let contexts: ContextService
    /// Agents' public keys for end-to-end encryption.
    public nonisolated let keys: KeyDirectory
    /// Per-agent rate limits; nil when they are off.
    nonisolated let rateLimits: RateLimits?
    public nonisolated let audit: any AuditSink
    /// Durable storage, if configured; without it nothing outlives the process.
    public nonisolated let store: (any MessageStore)?
    /// Presence and idempotency keys outside the process, if configured.
    public nonisolated let shared: (any SharedState)?
    /// The other nodes of this node's cluster, if it is in one (docs/cluster.md).
    public nonisolated let cluster: (any ClusterLink)?
    /// The topic patterns each node of the cluster subscribes to (nil outside a cluster).
    nonisolated let interest: ClusterInterest?
    /// Requests from other nodes that this node's agents are answering.
    let remoteRequests: RemoteRequests
    /// Tenants whose contexts' home this node is settling, with who waits for the answer; and
    /// those it claimed but could not read again from storage.
    let contextClaims = Mutex<(settling: [String: [@Sendable (ContextHome?) -> Void]], unread: Set<String>)>(
        ([:], []))
    /// Context writes forwarded to their tenant's home on another node, waiting for its answer.
    let contextWrites: PendingAnswers<Result<ContextHead, BusError>>
    /// Streams relayed to their receiver's node, waiting for its word that the receiver has them.
    let streamRelays: PendingAnswers<BusError?>
    /// Streams other nodes relay to this node's agents, being written to spool files, by
    /// `<node>/<number>`.
    let incomingStreams = Mutex<[String: IncomingStream]>([:])
    /// Uploads this node asked the other nodes for (an agent resumed here one parked elsewhere).
    let uploadFetches = PendingAnswers<Handover?>(capacity: IncomingStream.most)
    /// Uploads other nodes hand over to this one, being written to spool files, by number.
    let handedUploads = Mutex<[UInt64: HandedUpload]>([:])
    /// Agents on other nodes found full there, until when SENDs to them are refused (monotonic ms).
    let fullReceivers = Mutex<[AgentKey: UInt64]>([:])
    /// The send windows of senders on other nodes whose SENDs came lately, so that a run of their
    /// messages taken here goes back as one `credit` record (see ``RemoteSender``).
    let remoteSenders = Mutex<[RemoteSender.Key: RemoteSender]>([:])
    public nonisolated let logger: Logger
    /// Counters and histograms of what sessions do.
    public nonisolated let metrics: BusMetrics
    let idempotency: NIOLockedValueBox<IdempotencyWindow<IdempotentResult>>
    /// Runs blocking file I/O for stream spooling, off the event loops.
    let threadPool: NIOThreadPool
    private let nextSessionNumber = Atomic<UInt32>(0)
    private let shuttingDown = Atomic<Bool>(false)
    private let housekeeping = NIOLockedValueBox<RepeatedTask?>(nil)
    private let lastMessageID = NIOLockedValueBox<UInt64>(0)
    /// One thread for the registry snapshot's writes, so they never overlap and an older one
    /// cannot land after a newer one.
    private let snapshotWriter = NIOThreadPool(numberOfThreads: 1)
    /// The registry version the snapshot file holds, whether a write is queued, and whether the
    /// last one failed.
    private let snapshotSaving = NIOLockedValueBox((version: UInt64(0), busy: false, failing: false))

    /// Whether ``shutdown(drainTimeout:)`` has begun.
    public nonisolated var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }

    /// Audits a reply nobody waits for any more (`reply.late`); it is dropped.
    nonisolated func lateReply(from key: AgentKey) {
        record("reply.late", tenant: key.tenant, agentID: key.agentID)
    }

    public init(
        configuration: SupervisorConfiguration, audit: any AuditSink, store: (any MessageStore)? = nil,
        shared: (any SharedState)? = nil, contextStorage: (any ContextStorage)? = nil,
        keyStorage: (any KeyStorage)? = nil, cluster: (any ClusterLink)? = nil, metrics: BusMetrics = BusMetrics(),
        logger: Logger
    ) throws(BusError) {
        self.configuration = configuration
        self.metrics = metrics
        self.rateLimits = RateLimits(perSecond: configuration.rateLimitPerSecond, burst: configuration.rateLimitBurst)
        self.audit = audit
        self.store = store
        self.shared = shared
        self.cluster = cluster
        self.interest = cluster.map { ClusterInterest(cluster: $0, loop: MultiThreadedEventLoopGroup.singleton.any()) }
        self.remoteRequests = RemoteRequests(capacity: configuration.remoteRequestCapacity)
        self.contextWrites = PendingAnswers(capacity: configuration.remoteRequestCapacity)
        self.streamRelays = PendingAnswers(capacity: IncomingStream.most)
        self.logger = logger
        self.registry = Registry(complete: store == nil)
        self.routing = RoutingTable(
            orphanCapacity: configuration.mailboxCapacity + Int(configuration.limits.maxUnacked),
            orphanTTLMs: configuration.orphanTTLMs)
        self.streams = StreamStore(ttlMs: configuration.streamResumeTTLMs)
        self.keys = KeyDirectory(storage: keyStorage)
        self.contexts = ContextService(
            configuration: configuration, storage: contextStorage,
            record: { kind, tenant, agentID, detail in
                audit.record(
                    AuditEvent(kind: kind, tenant: tenant, agentID: agentID, at: WallClock.nowMs(), detail: detail))
            },
            mirror: Self.contextMirror(shared: shared, cluster: cluster))
        self.idempotency = NIOLockedValueBox(
            IdempotencyWindow(
                windowMs: configuration.idempotencyWindowMs, capacity: configuration.idempotencyCapacity,
                costBudget: configuration.idempotencyBytes))
        do {
            try FileManager.default.createDirectory(
                atPath: configuration.streamDirectory,
                withIntermediateDirectories: true)
            try SpoolFile.removeLeftovers(in: configuration.streamDirectory)
        } catch {
            throw BusError(.internal, "cannot create stream directory \(configuration.streamDirectory): \(error)")
        }
        self.threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        snapshotWriter.start()
    }

    /// Starts the periodic expiry of orphaned deliveries (dead-lettered, reason `offline`) and of
    /// parked uploads, on `loop`, until ``shutdown(drainTimeout:)``.
    public nonisolated func startHousekeeping(on loop: any EventLoop) {
        let period = TimeAmount.milliseconds(Int64(configuration.housekeepingMs))
        let task = loop.scheduleRepeatedTask(initialDelay: period, delay: period) { [self] _ in
            let now = MonotonicClock.nowMs()
            for (agent, envelope) in routing.expireOrphans(now: now) {
                deadLetter(envelope, to: agent, reason: .offline)
            }
            streams.expire(now: now)
            contexts.sweep(now: WallClock.nowMs()) { contextHome(of: $0) == .here }
            rateLimits?.forgetFull(nowMs: now)
            if cluster != nil {
                remoteRequests.expire(now: WallClock.nowMs())
                expireIncomingStreams(now: now)
                expireHandedUploads(now: now)
                interest?.refresh(now: now)
                refenceContexts()
            }
            if let shared { shared.online(routing.all.map(\.identity.key)) }
            saveSnapshotIfChanged()
        }
        housekeeping.withLockedValue { $0 = task }
    }

    /// Creates the session of an authenticated connection and makes it its agent's live session.
    /// A previous session of the same agent gets GOAWAY `replaced`. Call on `channel`'s event loop.
    /// - Parameter listed: in a cluster, runs on any thread once every node finds the session: once
    ///   the cluster's directory names this node (or could not be reached). The gateway writes
    ///   WELCOME then, so that a SEND from another node after it never misses the agent.
    public nonisolated func openSession(
        identity: Identity, channel: any Channel, listed: (@Sendable () -> Void)? = nil
    ) throws(BusError) -> AgentSession {
        guard !isShuttingDown else {
            throw BusError(.shuttingDown, "the server is shutting down")
        }
        var number = nextSessionNumber.wrappingAdd(1, ordering: .relaxed).newValue
        while number == 0 || routing.session(number: number) != nil {
            number = nextSessionNumber.wrappingAdd(1, ordering: .relaxed).newValue
        }
        let session = AgentSession(number: number, identity: identity, channel: channel, supervisor: self)
        let (replaced, orphans) = routing.attach(session)
        replaced?.closeSoon(GoAway(code: .replaced, message: "another connection of \(identity.agentID) took over"))
        session.requeue(orphans)
        if let cluster {
            // Its backlog is read only once the directory names this node: a message another node
            // stores for it from then on is announced here (``ClusterLink/stored(for:)``).
            session.mailbox.holdBacklog()
            cluster.attached(identity.key, at: session.openedAtMs) {
                session.backlogHoldEnded()
                listed?()
            }
        }
        // The session was made with its backlog gate closed (when there is a store), before anyone
        // could route to it: a SEND cannot overtake the stored messages.
        if store != nil { session.backlogArrived() }
        shared?.presence(identity.key, online: true)
        record("session.opened", tenant: identity.tenant, agentID: identity.agentID, ["session": "\(number)"])
        return session
    }

    /// Ends the live session of `key`, if it has one, with `goAway` (revoked tokens, operators).
    public nonisolated func disconnect(_ key: AgentKey, _ goAway: GoAway) {
        routing.session(for: key)?.closeSoon(goAway)
    }

    /// Retires a closed session: the agent goes offline unless a newer session took over.
    nonisolated func retire(_ session: AgentSession, patterns: [[Substring]], orphans: [Envelope]) {
        let key = session.identity.key
        session.bucket?.release()
        for pattern in patterns {
            interest?.unsubscribed(tenant: key.tenant, pattern: pattern.joined(separator: "."))
        }
        // Stored after the session is detached, so that a quick commit is announced to the agent's
        // node rather than to this closing session.
        var (stored, kept) = ([Envelope](), orphans)
        let movedTo = session.movedTo.withLock { $0 }
        if movedTo != nil {
            (stored, kept) = (orphans, [])
        } else if cluster != nil, routing.session(for: key).map({ $0 === session }) ?? true {
            // No session of the agent here took over: it may come back on any node, where only
            // what is stored reaches it. Its streams wait here: here for its next session, or
            // relayed to the node it opens one on (the directory names this node meanwhile).
            stored = orphans.filter { !$0.isStream }
            kept = orphans.filter(\.isStream)
        }
        for (agent, envelope) in routing.detach(session, patterns: patterns, orphans: kept, now: MonotonicClock.nowMs())
        {
            deadLetter(envelope, to: agent, reason: .offline)
        }
        storeMoved(stored, of: key, streamsTo: movedTo)
        // A takeover from another node that came while the session was being detached: either it
        // sees the session gone, or this sees where the agent went.
        if movedTo == nil, let movedLate = session.movedTo.withLock({ $0 }) { handOverOrphans(of: key, to: movedLate) }
        if routing.session(for: key) == nil {
            shared?.presence(key, online: false)
            cluster?.detached(key, holdingMs: kept.isEmpty ? 0 : configuration.orphanTTLMs)
        }
        record("session.closed", tenant: key.tenant, agentID: key.agentID, ["session": "\(session.number)"])
    }

    /// Puts back what a store kept: the registry (an agent that registered since keeps its newer
    /// description), which is then complete, and the last stored message id, which new ids stay
    /// above even if the clock went back.
    public nonisolated func restore(agents: [(AgentKey, AgentDescription)], lastMessageID: UInt64) {
        for (key, description) in registry.restoreFromStore(agents) {
            routing.setCapabilities(description?.capabilities ?? [], for: key)
        }
        self.lastMessageID.withLockedValue { $0 = max($0, lastMessageID) }
    }

    /// Puts back the registry's local snapshot (see ``RegistrySnapshot``), when the store cannot be
    /// read at start; the registry stays incomplete until ``restore(agents:lastMessageID:)``.
    /// Blocks on the file: call it off the event loops.
    /// - Returns: how many agents it held.
    public nonisolated func restoreSnapshot() throws -> Int {
        guard let path = configuration.registrySnapshotPath else { return 0 }
        let agents = try RegistrySnapshot.read(from: path)
        registry.restoreProvisional(agents)
        for (key, description) in agents { routing.setCapabilities(description.capabilities, for: key) }
        return agents.count
    }

    /// Writes the registry's snapshot on the thread pool if it changed since the last one written
    /// and no write is under way (writes never overlap, so an older one cannot land last).
    private nonisolated func saveSnapshotIfChanged() {
        guard configuration.registrySnapshotPath != nil else { return }
        let version = registry.version
        let due = snapshotSaving.withLockedValue { saving in
            guard !saving.busy, saving.version != version else { return false }
            saving.busy = true
            return true
        }
        guard due else { return }
        snapshotWriter.submit { [self] state in
            guard state == .active else {
                return snapshotSaving.withLockedValue { $0.busy = false }
            }
            writeSnapshot()
        }
    }

    /// Writes the registry's snapshot now (a blocking file write: on ``snapshotWriter``, whose one
    /// thread keeps writes in order). A failure is logged once until a write succeeds again.
    private nonisolated func writeSnapshot() {
        guard let path = configuration.registrySnapshotPath else { return }
        let (agents, version) = registry.snapshot()
        var error: (any Error)?
        do {
            try RegistrySnapshot(agents).write(to: path)
        } catch let failure {
            error = failure
        }
        let report = snapshotSaving.withLockedValue { saving in
            defer {
                saving.busy = false
                saving.failing = error != nil
                if error == nil { saving.version = version }
            }
            return error != nil && !saving.failing
        }
        if report, let error {
            logger.error("cannot write the registry snapshot", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    /// Puts back idempotency keys a ``SharedState`` kept (scoped key, encoded result, time left),
    /// before agents connect; entries that do not decode are skipped.
    public nonisolated func restoreIdempotency(_ entries: [(key: String, result: String, ttlMs: UInt64)]) {
        let now = MonotonicClock.nowMs()
        let window = configuration.idempotencyWindowMs
        idempotency.withLockedValue { keys in
            // Oldest first: the window forgets in the order keys were recorded.
            for entry in entries.sorted(by: { $0.ttlMs < $1.ttlMs }) {
                guard let result = IdempotentResult(encoded: entry.result) else { continue }
                let recorded = now - min(now, window - min(window, entry.ttlMs))
                _ = keys.begin(entry.key, now: recorded)
                keys.complete(entry.key, with: result, cost: result.cost, now: recorded)
            }
        }
    }

    /// A new id for a stored message: milliseconds since 2026 in the high bits, a counter in the
    /// low 20, never repeating or going back while this process runs (nor across restarts, unless
    /// the clock goes back).
    public nonisolated func nextMessageID() -> UInt64 {
        let stamp = StoredMessage.firstID(atUnixMs: WallClock.nowMs())
        guard let cluster else {
            return lastMessageID.withLockedValue { last in
                last = max(last + 1, stamp)
                return last
            }
        }
        // In a cluster, every id of this node is congruent to its slot: no other live node makes it.
        let stride = ClusterRecord.idStride
        return lastMessageID.withLockedValue { last in
            let next = max(last + 1, stamp)
            last = next + (cluster.idSlot + stride - next % stride) % stride
            return last
        }
    }

    /// Whether messages from `agent` are durable without the frame asking
    /// (``SupervisorConfiguration/durableTenants``, ``SupervisorConfiguration/durableAgents``).
    nonisolated func isDurable(_ agent: AgentKey) -> Bool {
        let tenants = configuration.durableTenants
        return configuration.durableAgents.contains(agent)
            || (!tenants.isEmpty && (tenants.contains(agent.tenant) || tenants.contains("*")))
    }

    /// A message to store for `to`, with a new id, kept until its deadline or for
    /// ``SupervisorConfiguration/storedMessageTTLMs``, whichever is sooner; `handedOut`: stored as
    /// handed to `to`'s live session, which holds it already.
    nonisolated func storedMessage(
        to: AgentKey, from: String, kind: DeliveryKind = .direct, subject: String = "", payload: [UInt8],
        deadline: UInt64? = nil, idempotencyKey: String = "", handedOut: Bool = false
    ) -> StoredMessage {
        StoredMessage(
            id: nextMessageID(), tenant: to.tenant, to: to.agentID, from: from, kind: kind, subject: subject,
            deadline: deadline, expiresAt: min(deadline ?? .max, WallClock.nowMs() + configuration.storedMessageTTLMs),
            payload: payload, idempotencyKey: idempotencyKey, attempts: handedOut ? 1 : 0, handedOut: handedOut)
    }

    /// Offers an audit event, stamped now, to the audit sink (which never blocks).
    public nonisolated func record(_ kind: String, tenant: String, agentID: String, _ detail: [String: String] = [:]) {
        audit.record(AuditEvent(kind: kind, tenant: tenant, agentID: agentID, at: WallClock.nowMs(), detail: detail))
    }

    /// Gives up on a delivery to `key`: its audit event and, with a store, a dead letter kept in
    /// PostgreSQL (messages). Answers to the agent's own requests are not deliveries and are dropped.
    nonisolated func deadLetter(_ envelope: Envelope, to key: AgentKey, reason: ErrorCode) {
        switch envelope {
        case .message(let message):
            let now = WallClock.nowMs()
            if message.storedID != 0 {
                store?.settle(message.storedID, attempts: message.attempts, deadLetterReason: reason)
            } else {
                store?.deadLetter(
                    StoredMessage(
                        id: 0, tenant: key.tenant, to: key.agentID, from: message.from, kind: message.kind,
                        subject: message.subject, deadline: message.deadline, expiresAt: now,
                        payload: Array(message.payload.readableBytesView), idempotencyKey: "",
                        attempts: message.attempts),
                    reason: reason)
            }
            var detail = ["from": message.from, "reason": reason.name, "attempts": "\(message.attempts)"]
            if message.storedID != 0 { detail["message"] = "\(message.storedID)" }
            record("message.dead_lettered", tenant: key.tenant, agentID: key.agentID, detail)
        case .stream(let stream):
            record(
                "stream.dead_lettered", tenant: key.tenant, agentID: key.agentID,
                ["from": stream.from, "stream": stream.open.streamID, "reason": reason.name])
        case .response, .requestFailed:
            break
        }
    }

    /// Stops taking sessions, sends every session GOAWAY `shutting_down`, lets each drain its
    /// deliveries for up to `drainTimeout`, then closes what is left and flushes the audit sink.
    public func shutdown(drainTimeout: TimeAmount) async {
        shuttingDown.store(true, ordering: .relaxed)
        let sessions = routing.all
        logger.info("draining sessions", metadata: ["count": "\(sessions.count)"])
        for session in sessions { session.drainSoon() }
        let deadline = NIODeadline.now() + drainTimeout
        for session in sessions {
            let closed = session.channel.closeFuture
            let timer = session.channel.eventLoop.scheduleTask(deadline: deadline) {
                session.channel.close(promise: nil)
            }
            try? await closed.get()
            timer.cancel()
        }
        housekeeping.withLockedValue { $0?.cancel() }
        // The writers' last flushes block: on the thread pool, not the cooperative pool. The store
        // goes first, since its final batches still produce audit events.
        let (store, shared, audit) = (store, shared, audit)
        // The last snapshot, after any housekeeping write queued on the same thread (housekeeping
        // has stopped).
        try? await snapshotWriter.runIfActive { [self] in writeSnapshot() }
        try? await snapshotWriter.shutdownGracefully()
        await keys.close()
        let contextStorage = contexts.storage
        let cluster = cluster
        try? await threadPool.runIfActive {
            // Leaving the cluster first: what other nodes send from then on goes elsewhere.
            cluster?.close()
            contextStorage?.close()
            store?.close()
            shared?.close()
            audit.close()
        }
        // The cluster is left: no more parts come for uploads other nodes were handing over.
        expireHandedUploads(now: .max)
        try? await threadPool.shutdownGracefully()
    }
}
