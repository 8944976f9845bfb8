import Bus
import NIOCore
import NIOPosix

/// A finished, verified upload to a context, waiting for the CONTEXT_WRITE that names it.
struct StagedBody {
    /// The context it was uploaded to.
    var contextID: String
    var file: SpoolFile
    var size: UInt64
}

/// A context body over the inline limit on its way to the agent that asked for it.
struct BodyStream {
    var ref: UInt64
    /// What is still to send.
    var body: ByteBuffer
    var index: UInt32 = 0
}

/// Context bodies over the inline limit travel as streams: uploaded with STREAM_OPEN to a
/// `context` target, then taken by a CONTEXT_WRITE that names the stream (`body_stream`); read
/// back as CONTEXT (status `streamed`) followed by STREAM_CHUNK frames and STREAM_END.
extension AgentSession {
    /// STREAM_OPEN to a context: a valid id and a size within the limit of context bodies.
    func checkContextUpload(_ open: StreamOpen) throws(BusError) {
        try Identifier.validate(open.target.name, field: "target.name")
        guard open.totalSize <= UInt64(configuration.contextBodyBytes) else {
            throw BusError(
                .tooLarge,
                "a context body may be at most \(configuration.contextBodyBytes) bytes, not \(open.totalSize)")
        }
    }

    /// A verified upload to a context waits for its CONTEXT_WRITE; STREAM_END is answered OK.
    func stage(_ spool: UploadSpool, ref: UInt64) {
        let open = spool.open
        stagedBodies[open.streamID] = StagedBody(contextID: open.target.name, file: spool.file, size: open.totalSize)
        audit("stream.completed", ["stream": open.streamID, "bytes": "\(open.totalSize)", "context": open.target.name])
        write(.ok(Ok(ref: ref)))
    }

    /// A CONTEXT_WRITE naming a staged upload: the body is read from its file on the thread pool,
    /// then written as any body. The upload is used up either way.
    func writeStagedBody(_ command: ContextWrite) {
        do throws(BusError) {
            guard command.body.readableBytes == 0, [.put, .create, .update].contains(command.operation) else {
                throw BusError(.invalidArgument, "body_stream goes with put, create or update, and an empty body")
            }
            guard let staged = stagedBodies.removeValue(forKey: command.bodyStream) else {
                throw BusError(.unknownStream, "no finished upload \(command.bodyStream) in this session")
            }
            guard staged.contextID == command.id else {
                throw BusError(.invalidArgument, "upload \(command.bodyStream) is for context \(staged.contextID)")
            }
            let allocator = channel.allocator
            supervisor.threadPool.runIfActive(eventLoop: channel.eventLoop) {
                try staged.file.read(count: Int(staged.size), at: 0, allocator: allocator)
            }.whenComplete { [self] result in
                assumeIsolated { session in
                    guard session.state != .closed else { return }
                    switch result {
                    case .success(let body):
                        var write = command
                        write.body = body
                        session.commitContextWrite(write)
                    case .failure(let error):
                        session.fail(command.ref, BusError(.internal, "reading the upload failed: \(error)"))
                        session.flush()
                    }
                }
            }
        } catch {
            fail(command.ref, error)
        }
    }

    /// CONTEXT_GET: the answer, and a body over the inline limit as a stream behind it.
    func handleContextGet(_ get: ContextGet) {
        do throws(BusError) {
            var reply = try supervisor.contexts.get(get, by: principal)
            guard reply.status == .body, reply.body.readableBytes > Int(configuration.limits.maxInlinePayload) else {
                return write(.context(reply))
            }
            guard bodyStreams.count < Limits.maxDownloadsInProgress else {
                throw BusError(
                    .overloaded, "at most \(Limits.maxDownloadsInProgress) large bodies on their way at once",
                    retryAfterMs: 100)
            }
            bodyStreams.append(BodyStream(ref: get.ref, body: reply.body))
            reply.status = .streamed
            reply.body = ByteBuffer()
            write(.context(reply))
            sendBodyChunks()
        } catch {
            fail(get.ref, error)
        }
    }

    /// Writes the chunks of the bodies on their way while the socket takes them (the rest goes
    /// when it drains: ``drain()`` calls this again).
    ///
    /// Each frame is taken from `bodyStreams` before it is written: a write can run session code
    /// before it returns (see ``write(_:)``), this method among it, which must find the stream
    /// past that frame.
    func sendBodyChunks() {
        let chunkSize = Int(configuration.limits.chunkSize)
        while channel.isWritable, var stream = bodyStreams.popFirst() {
            let streamID = ContextReply.streamID(ref: stream.ref)
            guard let data = stream.body.readSlice(length: min(chunkSize, stream.body.readableBytes)),
                data.readableBytes > 0
            else {
                write(.streamEnd(StreamEnd(ref: stream.ref, streamID: streamID)))
                continue
            }
            let index = stream.index
            stream.index += 1
            bodyStreams.prepend(stream)
            write(.streamChunk(StreamChunk(streamID: streamID, index: index, data: data)))
        }
    }
}
