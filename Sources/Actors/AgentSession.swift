public import Bus
import Foundation
public import NIOCore
import Synchronization

/// The actor of one connected agent. It runs on its connection's event loop, so reading, routing
/// and writing for the agent need no executor hop; other sessions reach it only through its
/// bounded ``Mailbox``.
///
/// The gateway calls ``receive(_:)`` for each decoded frame and ``flush()`` at the end of each
/// read batch, both on the channel's event loop (via `assumeIsolated`), and ``channelClosed()``
/// once when the connection ends.
public actor AgentSession {
    enum State { case active, draining, closed }

    /// One request this session made and is waiting on.
    struct PendingRequest {
        var ref: UInt64
        /// The agent the request went to; only its reply is accepted.
        var responder: String
        var idempotencyKey: String
        var timer: Scheduled<Void>?
        /// When the bus took it (uptime nanoseconds), for the latency histogram.
        var startedNs = NIODeadline.now().uptimeNanoseconds
    }

    /// One BROADCAST or PUBLISH of this session that went to other nodes too, waiting for their
    /// counts (docs/cluster.md).
    struct PendingFanout {
        var ref: UInt64
        /// Receivers that took it so far, on every node that answered (stored it, when durable).
        var taken: UInt32
        /// Nodes yet to answer (and for a durable one, this node's stores).
        var waiting: Int
        /// Each receiving node stores its copies, and the answer is OK `queued`.
        var durable = false
        /// The last refusal of a copy, told when no copy was stored.
        var refused: BusError?
        var timer: Scheduled<Void>?
    }

    /// One upload in progress: its spool and the chain of chunk writes, in order.
    struct ActiveUpload {
        var spool: UploadSpool
        var chain: EventLoopFuture<Void>
        /// STREAM_CHUNK and STREAM_END frames that came behind a STREAM_RESUME still waiting for
        /// the old connection's writes; nil once the upload takes them. At most
        /// ``Limits/maxChunksInFlight`` are held, as chunks in flight are bounded.
        var held: [Frame]?
    }

    /// Session number, unique while the server runs; the high half of correlation ids.
    public nonisolated let number: UInt32
    public nonisolated let identity: Identity
    /// When the session opened (Unix ms): a takeover from another node ends only older sessions.
    nonisolated let openedAtMs = WallClock.nowMs()
    /// The identity's roles, parsed once: every frame is checked against them.
    nonisolated let roles: [Role]
    /// Who the agent is to the scope of contexts.
    nonisolated let principal: ContextPrincipal
    /// Its messages are durable without asking (``Supervisor/isDurable(_:)``), looked up once: the
    /// identity does not change, and a SEND should not pay for the lookup.
    nonisolated let durableByDefault: Bool
    public nonisolated let channel: any Channel
    nonisolated let supervisor: Supervisor
    nonisolated let mailbox: Mailbox
    nonisolated let load = SessionLoad()
    nonisolated let drainingFlag = Atomic<Bool>(false)
    /// The node of the cluster where a session of the same agent took over: what this one holds
    /// goes there (messages stored for the agent, streams relayed), not to a next session here.
    nonisolated let movedTo = Mutex<String?>(nil)

    var state = State.active
    var window: DeliveryWindow<Envelope>
    var requests: CorrelationTable<PendingRequest>
    /// Frames that arrived while the cluster's directory was asked where a target is
    /// (``lookUp(_:then:)``); nil when no lookup is under way.
    var heldForLookup: [Frame]?
    /// Holds started (``holding(_:then:)``), so that an answer knows whether its `then` started another.
    var holds: UInt32 = 0
    /// The idempotency key whose command runs again right after Redis was asked for it
    /// (``awaitSharedKey(_:_:retry:)``).
    var sharedKeyChecked: String?
    var fanouts: CorrelationTable<PendingFanout>
    var patterns: [String: [Substring]] = [:]
    var uploads: [String: ActiveUpload] = [:]
    /// Downloads in progress: delivery id → the first chunk the receiver still needs (0 unless it
    /// resumed a broken download). At most ``Limits/maxDownloadsInProgress``.
    var downloadResumes: [UInt64: UInt32] = [:]
    /// Finished uploads to contexts, by stream id, waiting for the CONTEXT_WRITE that takes them.
    /// Counted with `uploads` against ``Limits/maxOpenUploads``; their files go with the session.
    var stagedBodies: [String: StagedBody] = [:]
    /// Context bodies over the inline limit being sent to this agent after their CONTEXT, a chunk at
    /// a time while the socket takes them. At most ``Limits/maxDownloadsInProgress``.
    var bodyStreams = CircularBuffer<BodyStream>(initialCapacity: 1)
    /// When a frame last arrived, on the ``MonotonicClock``.
    var lastHeard = MonotonicClock.nowMs()
    var ticker: RepeatedTask?
    /// Whether ``start(protocolVersion:)`` ran, i.e. WELCOME is out: nothing is delivered before.
    var started = false
    /// The agent's rate limit (nil: none), shared with its other sessions.
    let bucket: RateLimits.Bucket?
    /// Tokens drawn from `bucket` and not yet spent: the session draws up to ``creditBatch`` at a
    /// time, so the shared bucket's lock is taken once per batch of commands, not per command.
    var credit: UInt32 = 0
    static let creditBatch: UInt32 = 64
    /// When a refusal for the rate limit was last audited: at most one event a second.
    var rateLimitAuditedMs: UInt64 = 0
    var backlog = Backlog()
    /// This agent's SENDs by agent id being stored, which later SENDs to the same agent may have to
    /// follow into the store (see AgentSession+Backlog).
    var stores = StoresInFlight()
    /// Frames written since the last hand-over to the channel, encoded back to back: one pipeline
    /// write per batch instead of one per frame.
    var output = ByteBuffer()
    /// Bytes were handed to the channel and not yet flushed.
    var needsFlush = false
    /// A flush is queued on the event loop behind the tasks already there (``flushSoon()``).
    var flushQueued = false
    /// The session the last SEND or REQUEST by agent id went to: a sender usually talks to the same
    /// agents, and this spares it the routing table's lock and lookup. Used while that session is
    /// open; a takeover's old session hands what it took to its successor (``RoutingTable/detach``).
    var lastRoute: (agentID: String, session: AgentSession)?
    /// The receivers of the last BROADCAST or PUBLISH, with the routing table's change count they
    /// were read at (``fanoutReceivers(_:topic:)``); dropped by the tick once stale, so it does not
    /// keep closed sessions.
    var lastFanout: (kind: DeliveryKind, topic: String, at: UInt64, receivers: [AgentSession])?
    /// What a drain took from the mailbox and is writing; kept between drains (it trades buffers
    /// with the mailbox, see ``Mailbox/take(into:messages:takeStream:)``), empty outside one.
    var batch = CircularBuffer<Envelope>(initialCapacity: 1)
    /// Messages routed since the last flush, added to the shared metrics by ``flush()``.
    var routed = BusMetrics.DeliveredTally()
    /// Protocol 2 only (nil under 1): the window CREDIT grants, given back as receivers take messages.
    var sendWindow: SendWindow?
    /// Protocol 2 in a cluster: what this session's SENDs to agents on other nodes hold of its window.
    var remoteCredit = RemoteCreditLedger()
    /// Protocol 2: the last ref of a SEND, BROADCAST or PUBLISH (they must increase), the last one
    /// that succeeded, and the last one CONFIRM covered.
    var refs = ConfirmedRefs()
    /// Protocol 3: DELIVER ends with the message's stored id.
    var deliversMessageIDs = false
    /// KEY_PUBLISH and KEY_FETCH being answered: at most ``maxKeyCalls``, one more is `overloaded`.
    var keyCalls = 0

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        channel.eventLoop.executor.asUnownedSerialExecutor()
    }

    nonisolated var configuration: SupervisorConfiguration { supervisor.configuration }

    /// Whether the session is draining for shutdown (it takes no new work).
    public nonisolated var isDraining: Bool { drainingFlag.load(ordering: .relaxed) }

    init(number: UInt32, identity: Identity, channel: any Channel, supervisor: Supervisor) {
        let configuration = supervisor.configuration
        self.number = number
        self.identity = identity
        self.roles = Role.parse(identity.roles)
        self.principal = ContextPrincipal(identity)
        self.channel = channel
        self.supervisor = supervisor
        self.mailbox = Mailbox(
            capacity: configuration.mailboxCapacity,
            controlCapacity: 2 * Int(configuration.limits.maxPendingRequests),
            eventCapacity: configuration.watchQueueCapacity,
            // Closed from the start when there is a store, so the session is never published
            // without it: a SEND cannot overtake the stored messages (see AgentSession+Backlog).
            reading: supervisor.store != nil)
        self.window = DeliveryWindow(capacity: Int(configuration.limits.maxUnacked))
        self.requests = CorrelationTable(capacity: Int(configuration.limits.maxPendingRequests))
        self.fanouts = CorrelationTable(capacity: Int(configuration.limits.maxPendingRequests))
        self.bucket = supervisor.rateLimits?.bucket(for: identity.key, nowMs: MonotonicClock.nowMs())
        self.durableByDefault = supervisor.isDurable(identity.key)
    }

    /// Starts housekeeping (redelivery, heartbeat and slow-consumer checks) and, under protocol 2,
    /// flow control: the first CREDIT; what came for the agent meanwhile is delivered next, behind
    /// the answers to the frames pipelined with HELLO. Call once, after WELCOME.
    public func start(protocolVersion: UInt16) {
        started = true
        if protocolVersion >= 2 { openWindow() }
        deliversMessageIDs = protocolVersion >= 3
        let period = TimeAmount.milliseconds(Int64(configuration.tickMs))
        ticker = channel.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { [self] _ in
            assumeIsolated { $0.tick() }
        }
        scheduleDrain()
    }

    /// The agent's connection delivered bytes: it is alive. Called once per read, not per frame.
    public func heard() {
        lastHeard = MonotonicClock.nowMs()
    }

    /// Handles one frame from the agent.
    public func receive(_ frame: Frame) {
        guard state != .closed else { return }
        if heldForLookup != nil { return heldForLookup!.append(frame) }
        guard frame.type.isSentByClients, !frame.type.isHandshake else {
            return fail(0, BusError(.badFrame, "\(frame.type) is not a client frame"))
        }
        guard roles.contains(where: { $0.allows(frame.type) }) else {
            audit("security.denied", ["frame": "\(frame.type)"])
            return fail(frame.ref, BusError(.forbidden, "roles \(identity.roles) may not send \(frame.type)"))
        }
        if state == .draining, frame.startsWork {
            return fail(frame.ref, BusError(.shuttingDown, "the server is shutting down"))
        }
        if frame.startsWork, let bucket {
            if credit == 0 {
                let (granted, retryAfterMs) = bucket.take(upTo: Self.creditBatch, nowMs: lastHeard)
                if let retryAfterMs { return refuseOverRate(frame, retryAfterMs: retryAfterMs) }
                credit = granted
            }
            credit -= 1
        }
        switch frame {
        case .register(let register): handleRegister(register)
        case .unregister(let command): handleUnregister(command.ref)
        case .discover(let discover): handleDiscover(discover)
        case .heartbeat(let heartbeat): load.readiness = heartbeat.readiness
        case .ping(let ping): pong(ping)
        case .send(let send): if increases(send.ref) { handleSend(send) }
        case .broadcast(let fanout): if increases(fanout.ref) { handleFanout(fanout, kind: .broadcast) }
        case .publish(let fanout): if increases(fanout.ref) { handleFanout(fanout, kind: .topic) }
        case .subscribe(let command): handleSubscribe(command)
        case .unsubscribe(let command): handleUnsubscribe(command)
        case .ack(let ack): handleAck(ack)
        case .nack(let nack): handleNack(nack)
        case .request(let request): handleRequest(request)
        case .reply(let reply): handleReply(reply)
        case .streamOpen(let open): handleStreamOpen(open)
        case .streamChunk(let chunk): handleStreamChunk(chunk)
        case .streamEnd(let end): handleStreamEnd(end)
        case .streamResume(let resume): handleStreamResume(resume)
        case .streamAbort(let abort): discardUpload(abort.streamID)
        case .streamStatus(let status): handleDownloadResume(status)
        case .contextWrite(let write): handleContextWrite(write)
        case .contextGet(let get): handleContextGet(get)
        case .contextList(let list): answer(list.ref) { try supervisor.contexts.list(list, by: principal) }
        case .contextHistory(let query): answer(query.ref) { try supervisor.contexts.history(query, by: principal) }
        case .contextLineage(let query): answer(query.ref) { try supervisor.contexts.lineage(query, by: principal) }
        case .contextWatch(let watch): handleContextWatch(watch)
        case .contextUnwatch(let unwatch): handleContextUnwatch(unwatch)
        case .keyPublish(let publish): handleKeyPublish(publish)
        case .keyFetch(let fetch): handleKeyFetch(fetch)
        default:
            break  // server frames, refused above
        }
    }

    /// Flushes what this batch wrote. Called at the end of each read batch and after each drain.
    public func flush() {
        if sendWindow != nil { confirmSucceeded() }
        if !routed.isEmpty { supervisor.metrics.record(&routed) }
        handOver()
        guard needsFlush else { return }
        needsFlush = false
        channel.flush()
    }

    /// Runs `body` on the session: at once when called on its event loop (an answer without
    /// storage: no hop), else as a task there (a completion from a storage thread).
    nonisolated func onLoop(_ body: @escaping @Sendable (isolated AgentSession) -> Void) {
        guard channel.eventLoop.inEventLoop else {
            return channel.eventLoop.execute { self.assumeIsolated(body) }
        }
        assumeIsolated(body)
    }

    /// Flushes once the event loop has run the tasks queued before this call: answers that arrive
    /// from another thread in a burst (a group commit's) share one flush instead of one each.
    func flushSoon() {
        guard !flushQueued else { return }
        flushQueued = true
        channel.eventLoop.execute {
            self.assumeIsolated { session in
                session.flushQueued = false
                session.flush()
            }
        }
    }

    /// Gives the encoded frames to the channel (unflushed), so its write-buffer accounting, and
    /// with it `isWritable`, sees them.
    ///
    /// The batch leaves `output` before the channel sees it, because `channel.write` can run
    /// session code before it returns: a write that crosses the high-water mark is flushed at once
    /// (NIO's `BackPressureHandler`), and that flush completes earlier writes' promises (a download's
    /// last chunk written, its end drains) or, failing, closes the connection. What that code writes
    /// goes into a fresh batch, behind this one; into this one, it would send this one twice.
    private func handOver() {
        let bytes = output.readableBytes
        guard bytes > 0 else { return }
        let frames = output
        // Sized like the batch just written, so a steady stream of batches does not regrow its buffer
        // by doubling (a copy each time); not fixed, since a buffer waiting in the socket's queue
        // holds its whole capacity, and a fixed size would multiply the memory of small writes.
        output = channel.allocator.buffer(capacity: min(bytes, Self.handOverBytes))
        needsFlush = true
        channel.write(frames, promise: nil)
    }

    /// A batch this large goes to the channel at once (``write(_:)``).
    static let handOverBytes = 64 << 10

    /// Encodes `frame` into the batch; a batch over 64 KiB goes to the channel at once, so a drain
    /// stops at the socket's high-water mark instead of encoding its whole window first.
    ///
    /// Handing a batch over can run session code before this returns (a download's last chunk
    /// written ends it, and its end drains; see ``handOver()``): a caller stores what it took (a
    /// delivery, a chunk) before writing it, and holds no copy of session state across the call.
    func write(_ frame: Frame) {
        frame.encode(into: &output)
        if output.readableBytes >= Self.handOverBytes { handOver() }
    }

    /// A DELIVER, the frame every message becomes, written with no `Frame` around it to copy.
    func write(_ deliver: Deliver) {
        deliver.encodeFrame(into: &output)
        if output.readableBytes >= Self.handOverBytes { handOver() }
    }

    /// Writes what is buffered, then `frame` on its own, completing `promise` once it is on the socket.
    /// - Parameter capacity: about what the encoded frame needs, so a 1 MiB chunk is not grown by doubling.
    func writeAndFlush(_ frame: Frame, capacity: Int, promise: EventLoopPromise<Void>) {
        flush()
        var bytes = channel.allocator.buffer(capacity: capacity)
        frame.encode(into: &bytes)
        channel.writeAndFlush(bytes, promise: promise)
    }

    func fail(_ ref: UInt64, _ error: BusError) {
        supervisor.metrics.rejected(error.code)
        write(.error(ErrorFrame(ref: ref, error: error)))
    }

    /// Whether a SEND, BROADCAST or PUBLISH may run: under protocol 2 its ref must be above the
    /// last one (else ERROR `invalid_argument`). Checked after `receive`'s refusals, so a command
    /// refused before it ran can be sent again with the same ref.
    private func increases(_ ref: UInt64) -> Bool {
        guard sendWindow != nil else { return true }
        guard refs.take(ref) else {
            fail(ref, BusError(.invalidArgument, "refs of SEND, BROADCAST and PUBLISH must increase"))
            return false
        }
        return true
    }

    private func refuseOverRate(_ frame: Frame, retryAfterMs: UInt32) {
        if lastHeard >= rateLimitAuditedMs + 1000 {
            rateLimitAuditedMs = lastHeard
            audit("security.rate_limited", ["frame": "\(frame.type)", "retry_after_ms": "\(retryAfterMs)"])
        }
        let message = "over this agent's rate limit; retry in \(retryAfterMs) ms"
        fail(frame.ref, BusError(.rateLimited, message, retryAfterMs: retryAfterMs))
    }

    func audit(_ kind: String, _ detail: [String: String] = [:]) {
        supervisor.record(kind, tenant: identity.tenant, agentID: identity.agentID, detail)
    }

    private func tick() {
        let now = MonotonicClock.nowMs()
        // While the socket is full we stop reading the agent (backpressure): its silence is ours.
        if !channel.isWritable { lastHeard = now }
        let silence = UInt64(configuration.limits.heartbeatIntervalMs) * UInt64(configuration.missedHeartbeats)
        if now > lastHeard + silence {
            audit("session.heartbeat_timeout")
            return close(GoAway(code: .heartbeatTimeout, message: "no frame for \(silence) ms"))
        }
        if let since = mailbox.fullSince, now > since + configuration.slowConsumerTimeoutMs {
            audit("session.slow_consumer", ["unacked": "\(window.count)"])
            return close(GoAway(code: .slowConsumer, message: "deliveries not acknowledged in time"))
        }
        for entry in window.expire(now: now, timeout: configuration.ackTimeoutMs) {
            retryOrDeadLetter(entry.item, attempts: entry.attempt, reason: .timeout)
        }
        if backlog.retry { fetchBacklog() }
        if !remoteCredit.isEmpty { reclaimRemoteCredit(nowMs: now) }
        if let last = lastFanout, supervisor.routing.changed(since: last.at) { lastFanout = nil }
        drain()
    }
}

extension Frame {
    /// The command reference of a client frame, 0 for frames without one.
    var ref: UInt64 {
        switch self {
        case .register(let f): f.ref
        case .unregister(let f): f.ref
        case .discover(let f): f.ref
        case .send(let f), .request(let f): f.ref
        case .broadcast(let f), .publish(let f): f.ref
        case .subscribe(let f), .unsubscribe(let f): f.ref
        case .streamOpen(let f): f.ref
        case .streamEnd(let f): f.ref
        case .streamResume(let f): f.ref
        case .contextWrite(let f): f.ref
        case .contextGet(let f): f.ref
        case .contextList(let f): f.ref
        case .contextHistory(let f), .contextLineage(let f): f.ref
        case .contextWatch(let f): f.ref
        case .contextUnwatch(let f): f.ref
        case .keyPublish(let f): f.ref
        case .keyFetch(let f): f.ref
        default: 0
        }
    }

    /// Whether the frame starts new work (refused while draining), as opposed to finishing work.
    var startsWork: Bool {
        switch self {
        case .send, .broadcast, .publish, .request, .streamOpen, .register, .subscribe: true
        case .contextWrite, .contextGet, .contextList, .contextHistory, .contextLineage, .contextWatch: true
        case .keyPublish, .keyFetch: true
        default: false
        }
    }
}
