import Bus
import Crypto
import NIOCore
import Testing

/// An agent on a raw connection that speaks the context frames: it answers commands by ref and
/// keeps the events and watch errors that arrive in between.
struct ContextPeer {
    var raw: RawConnection
    var events: [ContextEvent] = []
    /// ERROR frames that answered no command of ours: the end of a watch.
    var watchErrors: [ErrorFrame] = []
    private var nextRef: UInt64 = 100

    static func connect(
        _ bus: TestBus, _ agent: String, tenant: String = "acme", roles: [String] = ["agent-full"]
    ) async throws -> ContextPeer {
        try await connect(port: bus.port, token: try await bus.token(agent, tenant: tenant, roles: roles))
    }

    static func connect(port: Int, token: String) async throws -> ContextPeer {
        var raw = try await RawConnection.connect(port: port)
        guard case .welcome = try await raw.hello(token) else {
            throw BusError(.unauthenticated, "no WELCOME")
        }
        return ContextPeer(raw: raw)
    }

    /// A fresh command reference.
    mutating func ref() -> UInt64 {
        nextRef += 1
        return nextRef
    }

    /// Sends `frame` and returns the frame that answers `ref`.
    mutating func call(_ frame: Frame, ref: UInt64) async throws -> Frame {
        try await raw.send(frame)
        while let answer = try await raw.read() {
            switch answer {
            case .contextEvent(let event): events.append(event)
            case .ok(let ok) where ok.ref == ref: return answer
            case .error(let error) where error.ref == ref: return answer
            case .error(let error): watchErrors.append(error)
            case .context(let reply) where reply.ref == ref: return answer
            case .contextPage(let page) where page.ref == ref: return answer
            case .contextWatching(let watching) where watching.ref == ref: return answer
            case .streamStatus(let status) where status.ref == ref: return answer
            case .streamStatus: break  // an upload's progress
            default: Issue.record("unexpected \(answer)")
            }
        }
        throw BusError(.unavailable, "the server closed the connection")
    }

    /// A CONTEXT_WRITE: the new head, or the error.
    mutating func write(
        _ operation: ContextOperation, _ id: String, body: String = "", expected: UInt64 = 0, ttlMs: UInt64 = 0,
        attributes: ContextAttributes? = nil, bodyStream: String = ""
    ) async throws -> Result<ContextHead, BusError> {
        let ref = ref()
        let frame = Frame.contextWrite(
            ContextWrite(
                ref: ref, operation: operation, id: id, expectedVersion: expected, ttlMs: ttlMs, attributes: attributes,
                body: ByteBuffer(string: body), bodyStream: bodyStream))
        switch try await call(frame, ref: ref) {
        case .context(let reply): return .success(reply.head)
        case .error(let error): return .failure(error.error)
        case let other: throw BusError(.badFrame, "unexpected \(other)")
        }
    }

    /// Puts a JSON context and returns its head; fails the test if refused.
    mutating func put(
        _ id: String, _ json: String, scope: ContextScope = .tenant, readers: [String] = [], writers: [String] = [],
        parents: [ContextParent] = [], ttlMs: UInt64 = 0
    ) async throws -> ContextHead {
        let attributes = ContextAttributes(
            kind: "plan", contentType: .json, scope: scope, readers: readers, writers: writers, parents: parents)
        return try await write(.put, id, body: json, ttlMs: ttlMs, attributes: attributes).get()
    }

    /// A CONTEXT_GET: the answer, or the error.
    mutating func get(_ id: String, version: UInt64 = 0, ifNewerThan: UInt64 = 0) async throws -> Result<
        ContextReply, BusError
    > {
        let ref = ref()
        switch try await call(
            .contextGet(ContextGet(ref: ref, id: id, version: version, ifNewerThan: ifNewerThan)), ref: ref)
        {
        case .context(let reply): return .success(reply)
        case .error(let error): return .failure(error.error)
        case let other: throw BusError(.badFrame, "unexpected \(other)")
        }
    }

    /// The body of the latest version, as a string (nil if refused).
    mutating func body(_ id: String) async throws -> String? {
        try await get(id).map { String(buffer: $0.body) }.get()
    }

    /// Starts a watch whose ref is returned; throws its refusal.
    @discardableResult
    mutating func watch(
        _ target: String, start: WatchStart = .now, after: UInt64 = 0, paths: [String] = []
    ) async throws -> UInt64 {
        let ref = ref()
        let frame = Frame.contextWatch(ContextWatch(ref: ref, target: target, start: start, after: after, paths: paths))
        switch try await call(frame, ref: ref) {
        case .contextWatching: return ref
        case .error(let error): throw error.error
        case let other: throw BusError(.badFrame, "unexpected \(other)")
        }
    }

    /// A query answered with CONTEXT_PAGE: the ids it lists.
    mutating func page(_ make: (UInt64) -> Frame) async throws -> Result<ContextPage, BusError> {
        let ref = ref()
        switch try await call(make(ref), ref: ref) {
        case .contextPage(let page): return .success(page)
        case .error(let error): return .failure(error.error)
        case let other: throw BusError(.badFrame, "unexpected \(other)")
        }
    }

    /// The next `count` events (waiting for them if needed), or fewer if a watch ends meanwhile.
    mutating func nextEvents(_ count: Int) async throws -> [ContextEvent] {
        let ended = watchErrors.count
        while events.count < count, watchErrors.count == ended {
            switch try await raw.read() {
            case .contextEvent(let event): events.append(event)
            case .error(let error): watchErrors.append(error)
            case nil: throw BusError(.unavailable, "closed with \(events.count) of \(count) events")
            case let other?: Issue.record("unexpected \(other)")
            }
        }
        let taken = Array(events.prefix(count))
        events.removeFirst(taken.count)
        return taken
    }

    /// Uploads `body` as the future body of context `id` (STREAM_OPEN to a context, chunks of
    /// `chunkSize`, STREAM_END) and returns the stream id a CONTEXT_WRITE names it by.
    mutating func upload(_ body: ByteBuffer, to id: String, chunkSize: UInt32 = 1 << 20) async throws -> String {
        let streamID = "body-\(ref())"
        let openRef = ref()
        let open = StreamOpen(
            ref: openRef, streamID: streamID, target: .context(id), totalSize: UInt64(body.readableBytes),
            chunkSize: chunkSize, sha256: Array(SHA256.hash(data: Array(body.readableBytesView))))
        switch try await call(.streamOpen(open), ref: openRef) {
        case .streamStatus: break
        case .error(let error): throw error.error
        case let other: throw BusError(.badFrame, "unexpected \(other)")
        }
        var rest = body
        var index: UInt32 = 0
        while let data = rest.readSlice(length: min(Int(chunkSize), rest.readableBytes)), data.readableBytes > 0 {
            try await raw.send(.streamChunk(StreamChunk(streamID: streamID, index: index, data: data)))
            index += 1
        }
        let endRef = ref()
        switch try await call(.streamEnd(StreamEnd(ref: endRef, streamID: streamID)), ref: endRef) {
        case .ok: return streamID
        case let other: throw BusError(.badFrame, "unexpected \(other)")
        }
    }

    /// The body a CONTEXT answered `streamed` sends behind it: its chunks, up to STREAM_END.
    mutating func streamedBody(ref: UInt64) async throws -> ByteBuffer {
        var body = ByteBuffer()
        var next: UInt32 = 0
        while true {
            switch try await raw.read() {
            case .streamChunk(var chunk) where chunk.streamID == ContextReply.streamID(ref: ref):
                #expect(chunk.index == next)
                next += 1
                body.writeBuffer(&chunk.data)
            case .streamEnd(let end) where end.ref == ref: return body
            case .contextEvent(let event): events.append(event)
            case nil: throw BusError(.unavailable, "closed in the middle of a body")
            case let other?: Issue.record("unexpected \(other)")
            }
        }
    }

    /// Closes the connection.
    func close() async { await raw.close() }
}

/// SHA-256 of `text`'s UTF-8.
func sha256(_ text: String) -> [UInt8] { Array(SHA256.hash(data: Array(text.utf8))) }

extension Result where Failure == BusError {
    /// The error code of a failure, nil for a success.
    var code: ErrorCode? {
        if case .failure(let error) = self { error.code } else { nil }
    }
}
