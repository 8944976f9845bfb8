import Bus
import Foundation
import NIOCore
import NIOPosix

extension AgentSession {
    func handleStreamOpen(_ open: StreamOpen) {
        do throws(BusError) {
            try Identifier.validate(open.streamID, field: "stream_id")
            guard uploads[open.streamID] == nil else {
                throw BusError(.invalidArgument, "stream \(open.streamID) is already open")
            }
            guard uploads.count + stagedBodies.count < Limits.maxOpenUploads else {
                throw BusError(
                    .overloaded, "at most \(Limits.maxOpenUploads) open streams per session",
                    retryAfterMs: 1000)
            }
            try checkDeadline(open.deadline)
            if open.target.kind == .context {
                try checkContextUpload(open)
            } else {
                do throws(BusError) {
                    _ = try resolve(open.target)
                } catch {
                    // In a cluster, the receiver may be on another node: relayed there once uploaded.
                    guard remote(open.target) != nil else { throw error }
                }
            }
            let assembly = try StreamAssembly(
                totalSize: open.totalSize, chunkSize: open.chunkSize,
                maxChunkSize: configuration.limits.chunkSize,
                maxTotalSize: configuration.maxStreamBytes)
            let file = SpoolFile(directory: configuration.streamDirectory, session: number)
            let spool = UploadSpool(owner: identity.key, open: open, file: file, assembly: assembly)
            uploads[open.streamID] = ActiveUpload(
                spool: spool, chain: channel.eventLoop.makeSucceededVoidFuture(), held: nil)
            write(.streamStatus(StreamStatus(ref: open.ref, streamID: open.streamID, nextIndex: 0, bytes: 0)))
        } catch {
            fail(open.ref, error)
        }
    }

    /// Stores a chunk on the thread pool, after the previous one, and reports progress once stored.
    func handleStreamChunk(_ chunk: StreamChunk) {
        guard var upload = uploads[chunk.streamID] else {
            return write(
                .streamAbort(
                    StreamAbort(
                        streamID: chunk.streamID, code: .unknownStream,
                        message: "no open stream \(chunk.streamID)")))
        }
        guard upload.held == nil else { return hold(.streamChunk(chunk), of: chunk.streamID) }
        let offset: UInt64
        do throws(BusError) {
            guard case .store(let at) = try upload.spool.receive(index: chunk.index, length: chunk.data.readableBytes)
            else { return }
            offset = at
        } catch {
            uploads[chunk.streamID] = nil
            return write(.streamAbort(StreamAbort(streamID: chunk.streamID, code: error.code, message: error.message)))
        }
        let spool = upload.spool
        let (pool, loop) = (supervisor.threadPool, channel.eventLoop)
        upload.chain = upload.chain.flatMap { spool.store(chunk.data, at: offset, pool: pool, loop: loop) }
        upload.chain.whenComplete { [self] result in
            assumeIsolated { $0.chunkStored(spool, result) }
        }
        uploads[chunk.streamID] = upload
    }

    private func chunkStored(_ spool: UploadSpool, _ result: Result<Void, any Error>) {
        guard state != .closed else { return }
        let id = spool.open.streamID
        switch result {
        case .success:
            writeStatus(spool, ref: 0)
            let assembly = spool.assembly
            supervisor.shared?.uploadProgress(
                identity.key, streamID: id, chunks: assembly.storedIndex, bytes: assembly.storedBytes,
                of: spool.open.totalSize, ttlMs: configuration.streamResumeTTLMs)
        case .failure(let error):
            guard uploads[id]?.spool === spool else { return }
            uploads[id] = nil
            write(.streamAbort(StreamAbort(streamID: id, code: .internal, message: "spooling failed: \(error)")))
        }
        flush()
    }

    /// STREAM_END: once every chunk is stored, verify the checksum and deliver.
    func handleStreamEnd(_ end: StreamEnd) {
        guard uploads[end.streamID]?.held == nil else { return hold(.streamEnd(end), of: end.streamID) }
        guard let upload = uploads.removeValue(forKey: end.streamID) else {
            return fail(end.ref, BusError(.unknownStream, "no open stream \(end.streamID)"))
        }
        upload.chain.whenComplete { [self] result in
            assumeIsolated { $0.finishUpload(upload.spool, end: end, stored: result) }
        }
    }

    private func finishUpload(_ spool: UploadSpool, end: StreamEnd, stored: Result<Void, any Error>) {
        guard state != .closed else { return }
        defer { flush() }
        let ref = end.ref
        do throws(BusError) {
            if case .failure(let error) = stored { throw BusError(.internal, "spooling failed: \(error)") }
            guard spool.assembly.isComplete else {
                throw BusError(
                    .checksumMismatch,
                    "stream ended after \(spool.assembly.storedBytes) of \(spool.open.totalSize) bytes")
            }
            guard let digest = spool.verified(atEnd: end.sha256) else {
                throw BusError(
                    .checksumMismatch,
                    spool.open.sha256 == StreamOpen.checksumAtEnd && end.sha256 == nil
                        ? "the STREAM_OPEN left the SHA-256 to the STREAM_END, which has none"
                        : "SHA-256 of the payload does not match")
            }
            if spool.open.target.kind == .context { return stage(spool, ref: ref) }
            var open = spool.open
            open.sha256 = digest
            let receiver: AgentSession
            do throws(BusError) {
                receiver = try resolve(open.target)
            } catch {
                guard let remote = remote(open.target) else { throw error }
                return relay(open, in: spool.file, to: remote, ref: ref)
            }
            try receiver.enqueue(.stream(CompletedStream(from: identity.agentID, open: open, file: spool.file)))
            streamDelivered(open, ref: ref)
        } catch {
            fail(ref, error)
        }
    }

    private func streamDelivered(_ open: StreamOpen, ref: UInt64) {
        audit("stream.completed", ["stream": open.streamID, "bytes": "\(open.totalSize)"])
        write(.ok(Ok(ref: ref, outcome: .delivered, recipients: 1)))
    }

    /// An upload whose receiver is on another node: relayed there (Supervisor+ClusterStreams), and
    /// answered once that node placed it in the receiver's session.
    private func relay(_ open: StreamOpen, in file: SpoolFile, to remote: (agentID: String, node: String), ref: UInt64)
    {
        supervisor.relayStream(open, file: file, from: identity.key, to: remote.agentID, at: remote.node) { error in
            self.onLoop { session in
                guard session.state != .closed else { return }
                if let error { session.fail(ref, error) } else { session.streamDelivered(open, ref: ref) }
                session.flush()
            }
        }
    }

    /// STREAM_RESUME: where an upload stands, taking it back from the parking lot after a reconnect.
    /// The answer waits for the old connection's last chunk writes, then resume starts after the
    /// last stored chunk.
    func handleStreamResume(_ resume: StreamRef) {
        if let upload = uploads[resume.streamID] {
            // Resumed already, perhaps not answered yet: answer after the first answer.
            return upload.chain.whenComplete { [self] _ in
                assumeIsolated { session in
                    guard session.state != .closed else { return }
                    if session.uploads[resume.streamID]?.spool === upload.spool {
                        session.writeStatus(upload.spool, ref: resume.ref)
                    } else {
                        session.fail(resume.ref, BusError(.unknownStream, "stream \(resume.streamID) was aborted"))
                    }
                    session.flush()
                }
            }
        }
        if let parked = supervisor.streams.take(
            owner: identity.key, streamID: resume.streamID, now: MonotonicClock.nowMs())
        {
            let spool = parked.spool
            // A failed write leaves the assembly short, which END reports, so failures need no path here.
            let ready = parked.chain.hop(to: channel.eventLoop).recover { _ in }.map { spool.rewind() }
            return resumeUpload(spool, ready: ready, ref: resume.ref)
        }
        guard supervisor.cluster != nil else {
            return fail(resume.ref, BusError(.unknownStream, "no stream \(resume.streamID) to resume"))
        }
        // In a cluster, the upload may be parked on the node of the connection that broke: that
        // node hands it over (Supervisor+ClusterResume), the session's frames held until it says so.
        let (owner, streamID) = (identity.key, resume.streamID)
        holding({ found in supervisor.fetchUpload(owner: owner, streamID: streamID, found: found) }) { session, found in
            guard let found else {
                return session.fail(resume.ref, BusError(.unknownStream, "no stream \(streamID) to resume"))
            }
            guard session.state != .closed else {
                // Closed meanwhile: parked here, as its uploads were.
                return session.supervisor.streams.park(found.spool, chain: found.arrived, now: MonotonicClock.nowMs())
            }
            session.resumeUpload(found.spool, ready: found.arrived.hop(to: session.channel.eventLoop), ref: resume.ref)
        }
    }

    /// Takes an upload back (parked, or handed over by another node): it takes chunks again only
    /// once `ready` (the writes its old connection left are done, or the chunks another node held
    /// are here), and chunks that come meanwhile (pipelined behind the STREAM_RESUME) are held until
    /// then. If `ready` fails, the upload is dropped and the resume answered `unknown_stream`.
    private func resumeUpload(_ spool: UploadSpool, ready: EventLoopFuture<Void>, ref: UInt64) {
        let streamID = spool.open.streamID
        uploads[streamID] = ActiveUpload(spool: spool, chain: ready, held: [])
        ready.whenComplete { [self] result in
            assumeIsolated { session in
                // A session that closed meanwhile parked the upload again (unless it was aborted).
                guard session.state != .closed else { return }
                guard let held = session.uploads[streamID]?.held, session.uploads[streamID]?.spool === spool else {
                    session.fail(ref, BusError(.unknownStream, "stream \(streamID) was aborted before it resumed"))
                    return session.flush()
                }
                if case .failure(let error) = result {
                    session.discardUpload(streamID)
                    session.fail(ref, BusError(.unknownStream, "stream \(streamID) could not be taken over: \(error)"))
                    return session.flush()
                }
                session.uploads[streamID]?.held = nil
                session.writeStatus(spool, ref: ref)
                for frame in held {
                    switch frame {
                    case .streamChunk(let chunk): session.handleStreamChunk(chunk)
                    case .streamEnd(let end): session.handleStreamEnd(end)
                    default: break
                    }
                }
                session.flush()
            }
        }
    }

    /// Drops an upload (a STREAM_ABORT either way); a STREAM_END held behind its resume is answered
    /// ERROR `unknown_stream`, and so is the resume itself when its answer comes.
    func discardUpload(_ streamID: String) {
        for case .streamEnd(let end) in uploads[streamID]?.held ?? [] {
            fail(end.ref, BusError(.unknownStream, "stream \(streamID) was aborted"))
        }
        uploads[streamID] = nil
    }

    /// Keeps a frame of an upload whose resume is not answered yet; too many abort the upload
    /// (STREAM_ABORT `overloaded`), as chunks in flight are bounded.
    private func hold(_ frame: Frame, of streamID: String) {
        guard var held = uploads[streamID]?.held, held.count < Int(Limits.maxChunksInFlight) else {
            discardUpload(streamID)
            return write(
                .streamAbort(
                    StreamAbort(
                        streamID: streamID, code: .overloaded,
                        message: "more than \(Limits.maxChunksInFlight) frames sent before the resume was answered")))
        }
        held.append(frame)
        uploads[streamID]?.held = held
    }

    private func writeStatus(_ spool: UploadSpool, ref: UInt64) {
        let assembly = spool.assembly
        write(
            .streamStatus(
                StreamStatus(
                    ref: ref, streamID: spool.open.streamID, nextIndex: assembly.storedIndex,
                    bytes: assembly.storedBytes)))
    }

    /// Sends a verified stream to this agent: STREAM_OPEN (ref = delivery id), chunks read from the
    /// spool one at a time (the next is read once the previous is written), STREAM_END.
    ///
    /// To the receiver the stream is `<delivery id>/<sender's stream id>`: unique in the session
    /// even when two senders pick the same id or a redelivery overlaps the first attempt.
    func startDownload(_ stream: CompletedStream, deliveryID: UInt64) {
        var open = stream.open
        open.ref = deliveryID
        open.streamID = "\(deliveryID)/\(stream.open.streamID)"
        open.target = .agent(stream.from)
        downloadResumes[deliveryID] = 0
        write(.streamOpen(open))
        sendChunk(stream, open: open, index: 0)
    }

    /// A receiver kept chunks `0..<nextIndex` of this download from a broken attempt: skip them.
    func handleDownloadResume(_ status: StreamStatus) {
        guard downloadResumes[status.ref] != nil, window.touch(status.ref, now: MonotonicClock.nowMs()) else { return }
        downloadResumes[status.ref] = status.nextIndex
    }

    /// A download ended (sent, withdrawn or failed): its slot goes to the next stream waiting.
    private func downloadEnded(_ deliveryID: UInt64) {
        downloadResumes[deliveryID] = nil
        drain()
    }

    /// Sends chunk `index` of a download (or the first one the receiver still needs), unless its
    /// delivery was withdrawn (NACKed, timed out, dead-lettered): then the receiver drops it.
    private func sendChunk(_ stream: CompletedStream, open: StreamOpen, index: UInt32) {
        guard state != .closed else { return }
        let deliveryID = open.ref
        let index = max(index, downloadResumes[deliveryID] ?? 0)
        guard window.touch(deliveryID, now: MonotonicClock.nowMs()) else {
            defer { downloadEnded(deliveryID) }
            write(
                .streamAbort(
                    StreamAbort(streamID: open.streamID, code: .unavailable, message: "the delivery was withdrawn")))
            return flush()
        }
        guard UInt64(index) < open.chunkCount else {
            write(.streamEnd(StreamEnd(ref: deliveryID, streamID: open.streamID)))
            flush()
            return downloadEnded(deliveryID)
        }
        let offset = UInt64(index) * UInt64(open.chunkSize)
        let count = Int(min(UInt64(open.chunkSize), open.totalSize - offset))
        let allocator = channel.allocator
        supervisor.threadPool.runIfActive(eventLoop: channel.eventLoop) {
            try stream.file.read(count: count, at: offset, allocator: allocator)
        }.whenComplete { [self] result in
            assumeIsolated { $0.chunkRead(stream, open: open, index: index, result) }
        }
    }

    private func chunkRead(
        _ stream: CompletedStream, open: StreamOpen, index: UInt32,
        _ result: Result<ByteBuffer, any Error>
    ) {
        guard state != .closed else { return }
        switch result {
        case .success(let data):
            let written = channel.eventLoop.makePromise(of: Void.self)
            writeAndFlush(
                .streamChunk(StreamChunk(streamID: open.streamID, index: index, data: data)),
                capacity: data.readableBytes + open.streamID.utf8.count + 32, promise: written)
            written.futureResult.whenSuccess { [self] in
                assumeIsolated { $0.sendChunk(stream, open: open, index: index + 1) }
            }
        case .failure(let error):
            write(
                .streamAbort(
                    StreamAbort(
                        streamID: open.streamID, code: .internal,
                        message: "reading the spool failed: \(error)")))
            flush()
            downloadEnded(open.ref)
        }
    }
}
