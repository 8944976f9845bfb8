import Bus
import Crypto
import NIOCore
import NIOPosix
import Synchronization

/// Streams across the nodes of a cluster (docs/cluster.md). The sender's node takes the upload as
/// on one node, spooled and verified; then, the receiver being on another node, it relays the file
/// there a part at a time (``StreamRelay``), and that node writes it to a spool file of its own,
/// checks the SHA-256 again, and places it in the receiver's session, which downloads it as any
/// stream. The sender's OK waits for that node's word.
extension Supervisor {
    /// How long the sender's node waits, after the last part, for the receiving node's word.
    static let streamRelayAnswerTimeout = TimeAmount.seconds(10)

    /// Relays the verified upload `open` (its SHA-256 in it) in `file` from `from` to agent
    /// `agentID` of `node`; `done` gets nil once that node placed it in the agent's session, or
    /// why not, on any thread.
    nonisolated func relayStream(
        _ open: StreamOpen, file: SpoolFile, from: AgentKey, to agentID: String, at node: String,
        done: @escaping @Sendable (BusError?) -> Void
    ) {
        guard let cluster else { return done(BusError(.internal, "this bus is not in a cluster")) }
        guard let number = streamRelays.add(done) else {
            return done(BusError(.overloaded, "too many streams are on their way to other nodes", retryAfterMs: 1_000))
        }
        var frame = ByteBuffer()
        Frame.streamOpen(open).encode(into: &frame)
        let record = ClusterRecord(
            kind: .streamOpen, node: cluster.nodeID, tenant: from.tenant, to: agentID, from: from.agentID,
            correlationID: number, payload: frame)
        var part = record
        part.kind = .streamPart
        part.payload = ByteBuffer()
        let relay = StreamRelay(
            template: part, file: file, total: open.totalSize, cluster: cluster, node: node, pool: threadPool,
            failed: { [self] error in streamRelays.take(number)?(error) },
            sent: { [self] in
                MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: Self.streamRelayAnswerTimeout) {
                    self.streamRelays.take(number)?(
                        BusError(.unavailable, "the receiver's node did not say whether it has the stream"))
                }
            })
        cluster.forward(record, to: node) { error in
            guard let error else { return relay.send(0) }
            relay.failed(error)
        }
    }

    /// A record of a stream another node relays here: its STREAM_OPEN, or its next part. Parts
    /// are written on the cluster's inbound thread (a part is at most 1 MiB, into the page cache).
    nonisolated func receiveStream(_ record: ClusterRecord) {
        let key = "\(record.node)/\(record.correlationID)"
        if record.kind == .streamOpen {
            var frame = record.payload
            guard case .streamOpen(let open) = try? Frame.decode(from: &frame, maxFrameBytes: .max) else { return }
            let stream = IncomingStream(
                tenant: record.tenant, from: record.from, to: record.to, open: open,
                file: SpoolFile(directory: configuration.streamDirectory, session: 0), openedMs: MonotonicClock.nowMs())
            let taken = incomingStreams.withLock { streams in
                guard streams.count < IncomingStream.most else { return false }
                streams[key] = stream
                return true
            }
            guard taken else {
                return answerStream(
                    record, BusError(.overloaded, "too many streams are on their way to this node", retryAfterMs: 1_000)
                )
            }
            return
        }
        guard var stream = incomingStreams.withLock({ $0.removeValue(forKey: key) }) else { return }
        do throws(BusError) {
            let offset = try stream.cursor.place(
                record.count, length: record.payload.readableBytes, total: stream.open.totalSize)
            try stream.file.write(record.payload, at: offset)
            record.payload.withUnsafeReadableBytes { stream.hash.update(bufferPointer: $0) }
        } catch {
            return answerStream(record, error)
        }
        incomingStreams.withLock { $0[key] = stream }
        if stream.cursor.bytes == stream.open.totalSize { finishStream(key, record) }
    }

    /// The whole stream is here: checked, and placed in its receiver's session.
    private nonisolated func finishStream(_ key: String, _ record: ClusterRecord) {
        guard let stream = incomingStreams.withLock({ $0.removeValue(forKey: key) }) else { return }
        do throws(BusError) {
            guard Array(stream.hash.finalize()) == stream.open.sha256 else {
                throw BusError(.checksumMismatch, "the relayed stream's SHA-256 does not match")
            }
            guard let receiver = routing.session(for: AgentKey(tenant: stream.tenant, agentID: stream.to)) else {
                throw BusError(.offline, "\(stream.to) is offline")
            }
            try receiver.enqueue(.stream(CompletedStream(from: stream.from, open: stream.open, file: stream.file)))
            answerStream(record, nil)
        } catch {
            answerStream(record, error)
        }
    }

    /// Tells the sending node what became of its stream.
    private nonisolated func answerStream(_ record: ClusterRecord, _ error: BusError?) {
        guard let cluster else { return }
        cluster.forward(
            ClusterRecord(
                kind: .streamDelivered, node: cluster.nodeID, tenant: record.tenant,
                correlationID: record.correlationID, code: error?.code ?? .internal, message: error?.message ?? ""),
            to: record.node
        ) { _ in }
    }

    /// The receiving node's word on a stream this node relayed.
    nonisolated func streamDelivered(_ record: ClusterRecord) {
        let error = record.code == .internal && record.message.isEmpty ? nil : BusError(record.code, record.message)
        streamRelays.take(record.correlationID)?(error)
    }

    /// Drops relayed streams not finished within the resume window (their sending node died).
    nonisolated func expireIncomingStreams(now: UInt64) {
        incomingStreams.withLock { streams in
            streams = streams.filter { $0.value.openedMs + configuration.streamResumeTTLMs > now }
        }
    }
}
