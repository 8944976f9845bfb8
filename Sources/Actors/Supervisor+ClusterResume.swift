import Bus
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization

/// Uploads resumed on another node than the one their connection broke on (docs/cluster.md). The
/// resuming node asks every other node for the upload; the one that holds it parked takes it out
/// of its parking lot and sends its stored chunks over, a part at a time (``StreamRelay``); the
/// resuming node writes them to a spool of its own, hashing as it goes, and the upload goes on
/// there as if it had been parked there.
extension Supervisor {
    /// How long the resuming node waits for the other nodes to say whether they hold the upload.
    static let uploadFetchTimeout = TimeAmount.seconds(2)
    /// How long a node asked for an upload may take to hand it over (less than the asker waits;
    /// an answer that still comes too late is parked at the asker).
    static let uploadHandoverMs: UInt64 = 1_500

    /// An upload handed over by another node: the spool it goes on in, and when its stored chunks
    /// are all here.
    typealias Handover = (spool: UploadSpool, arrived: EventLoopFuture<Void>)

    /// Asks the other nodes for `owner`'s upload `streamID`; `found` gets it from the node that held
    /// it parked, or nil when none did (or none answered in time), on any thread.
    nonisolated func fetchUpload(
        owner: AgentKey, streamID: String, found: @escaping @Sendable (Handover?) -> Void
    ) {
        guard let cluster, case let nodes = cluster.otherNodes, !nodes.isEmpty else { return found(nil) }
        // The first upload found is the answer; no answer from any node at all is nil.
        let waiting = NIOLockedValueBox((nodes: nodes.count, answered: false))
        let answer: @Sendable (Handover?) -> Void = { handover in
            let first = waiting.withLockedValue { waiting in
                waiting.nodes -= 1
                guard !waiting.answered, handover != nil || waiting.nodes == 0 else { return false }
                waiting.answered = true
                return true
            }
            if first { found(handover) }
        }
        for node in nodes {
            guard let number = uploadFetches.add(answer) else {
                answer(nil)
                continue
            }
            MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: Self.uploadFetchTimeout) {
                self.uploadFetches.take(number)?(nil)
            }
            let ask = ClusterRecord(
                kind: .uploadFetch, node: cluster.nodeID, tenant: owner.tenant, from: owner.agentID,
                subject: streamID, correlationID: number, deadline: WallClock.nowMs() + Self.uploadHandoverMs)
            cluster.forward(ask, to: node) { error in
                if error != nil { self.uploadFetches.take(number)?(nil) }
            }
        }
    }

    /// Another node asks for an upload: if it is parked here, this node hands it over, once the
    /// writes its broken connection left are done. If the agent's session here has not closed yet
    /// (its connection broke unseen, and the asking node's newer session is taking over), the
    /// answer waits until it has, and so has parked its uploads. Past the asker's deadline the
    /// upload stays parked here, and the answer is none.
    nonisolated func handOverUpload(_ asked: ClusterRecord) {
        let owner = AgentKey(tenant: asked.tenant, agentID: asked.from)
        guard let session = routing.session(for: owner) else { return handOverUpload(asked, of: owner) }
        let waited = Atomic(false)
        let go: @Sendable () -> Void = { [self] in
            guard !waited.exchange(true, ordering: .relaxed) else { return }
            handOverUpload(asked, of: owner)
        }
        session.channel.closeFuture.whenComplete { _ in go() }
        let left = (asked.deadline ?? 0) > WallClock.nowMs() ? (asked.deadline ?? 0) - WallClock.nowMs() : 0
        session.channel.eventLoop.scheduleTask(in: .milliseconds(Int64(left))) { go() }
    }

    private nonisolated func handOverUpload(_ asked: ClusterRecord, of owner: AgentKey) {
        guard let cluster else { return }
        let none = ClusterRecord(
            kind: .uploadFound, node: cluster.nodeID, tenant: asked.tenant, from: asked.from,
            correlationID: asked.correlationID)
        let inTime: @Sendable () -> Bool = { WallClock.nowMs() < asked.deadline ?? .max }
        guard inTime(), let parked = streams.take(owner: owner, streamID: asked.subject, now: MonotonicClock.nowMs())
        else { return cluster.forward(none, to: asked.node) { _ in } }
        parked.chain.whenComplete { [self] _ in
            let spool = parked.spool
            // Kept here if the asker gave up meanwhile, or cannot be told.
            let keep: @Sendable () -> Void = {
                self.streams.park(spool, chain: parked.chain, now: MonotonicClock.nowMs())
            }
            guard inTime() else {
                keep()
                return cluster.forward(none, to: asked.node) { _ in }
            }
            spool.rewind()
            let assembly = spool.assembly
            var answer = none
            answer.count = assembly.storedIndex
            Frame.streamOpen(spool.open).encode(into: &answer.payload)
            var part = none
            part.kind = .uploadPart
            // What fails on the way makes the resuming node's handover time out: the agent uploads
            // again from the start.
            let relay = StreamRelay(
                template: part, file: spool.file, total: assembly.storedBytes, cluster: cluster, node: asked.node,
                pool: threadPool, failed: { _ in }, sent: {})
            cluster.forward(answer, to: asked.node) { error in
                if error == nil { relay.send(0) } else { keep() }
            }
        }
    }

    /// The answer of a node asked for an upload: nothing, or the upload, whose parts follow.
    /// One that comes after the question timed out (the agent heard `unknown_stream`) is kept
    /// parked here instead, as the other node gave it up.
    nonisolated func uploadFound(_ record: ClusterRecord) {
        let answer = uploadFetches.take(record.correlationID)
        var frame = record.payload
        guard record.payload.readableBytes > 0,
            case .streamOpen(let open) = try? Frame.decode(from: &frame, maxFrameBytes: .max),
            var assembly = try? StreamAssembly(
                totalSize: open.totalSize, chunkSize: open.chunkSize, maxChunkSize: open.chunkSize,
                maxTotalSize: open.totalSize),
            (try? assembly.restore(storedChunks: record.count)) != nil
        else {
            answer?(nil)
            return
        }
        let spool = UploadSpool(
            owner: AgentKey(tenant: record.tenant, agentID: record.from), open: open,
            file: SpoolFile(directory: configuration.streamDirectory, session: 0), assembly: assembly)
        let done = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
        if assembly.storedBytes == 0 {
            done.succeed()
        } else {
            handedUploads.withLock {
                $0[record.correlationID] = HandedUpload(spool: spool, done: done, lastMs: MonotonicClock.nowMs())
            }
        }
        guard let answer else {
            return streams.park(spool, chain: done.futureResult, now: MonotonicClock.nowMs())
        }
        answer((spool, done.futureResult))
    }

    /// A part of an upload another node hands over, written on the cluster's inbound thread.
    nonisolated func receiveHandedPart(_ record: ClusterRecord) {
        guard var handed = handedUploads.withLock({ $0.removeValue(forKey: record.correlationID) }) else { return }
        let total = handed.spool.assembly.storedBytes
        do throws(BusError) {
            let offset = try handed.cursor.place(record.count, length: record.payload.readableBytes, total: total)
            try handed.spool.append(record.payload, at: offset)
        } catch {
            handed.spool.restart()
            return handed.done.fail(error)
        }
        handed.lastMs = MonotonicClock.nowMs()
        guard handed.cursor.bytes < total else { return handed.done.succeed() }
        handedUploads.withLock { $0[record.correlationID] = handed }
    }

    /// Fails handovers whose parts stopped coming (the node handing them over died), and, at
    /// shutdown (`now` the largest), every one. The upload starts again from chunk 0 if resumed.
    nonisolated func expireHandedUploads(now: UInt64) {
        let stalled = handedUploads.withLock { handed in
            let stalled = handed.filter { $0.value.lastMs + HandedUpload.partTimeoutMs <= now }
            for number in stalled.keys { handed[number] = nil }
            return stalled.values
        }
        for handed in stalled {
            handed.spool.restart()
            handed.done.fail(BusError(.unavailable, "the node that held the upload stopped handing it over"))
        }
    }
}
