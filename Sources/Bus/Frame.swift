public import NIOCore

/// One frame of the wire protocol (versions 1 and 2). On the wire: `u32` length of what follows, `u8` type, body.
///
/// `docs/protocol.md` specifies every body field by field.
///
/// The frames of the per-message path are stored inline; the larger bodies of the others are
/// `indirect` (boxed), so that every frame is not as large as the largest: a frame is copied
/// several times between its decoding and its handling.
public enum Frame: Sendable, Equatable {
    indirect case hello(Hello)
    indirect case welcome(Welcome)
    indirect case error(ErrorFrame)
    indirect case goAway(GoAway)
    case ok(Ok)
    indirect case login(Login)
    indirect case refresh(Refresh)
    indirect case tokens(Tokens)
    case logout(RefOnly)
    case credit(Credit)
    case ping(RefOnly)
    case pong(RefOnly)
    case confirm(RefOnly)
    indirect case register(Register)
    case unregister(RefOnly)
    indirect case discover(Discover)
    indirect case discovered(Discovered)
    case heartbeat(Heartbeat)
    case send(Send)
    case broadcast(Fanout)
    case publish(Fanout)
    case subscribe(PatternCommand)
    case unsubscribe(PatternCommand)
    case deliver(Deliver)
    case ack(Ack)
    case nack(Ack)
    case request(Send)
    case reply(Reply)
    case response(Response)
    indirect case streamOpen(StreamOpen)
    case streamChunk(StreamChunk)
    case streamEnd(StreamEnd)
    case streamResume(StreamRef)
    indirect case streamStatus(StreamStatus)
    indirect case streamAbort(StreamAbort)
    indirect case contextWrite(ContextWrite)
    indirect case contextGet(ContextGet)
    indirect case contextList(ContextList)
    indirect case contextHistory(ContextQuery)
    indirect case contextWatch(ContextWatch)
    indirect case contextUnwatch(ContextUnwatch)
    indirect case contextLineage(ContextQuery)
    indirect case context(ContextReply)
    indirect case contextPage(ContextPage)
    indirect case contextEvent(ContextEvent)
    indirect case contextWatching(ContextWatching)
    indirect case keyPublish(KeyPublish)
    indirect case keyFetch(KeyFetch)
    indirect case key(KeyInfo)

    /// The frame's type byte.
    public var type: FrameType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .error: .error
        case .goAway: .goAway
        case .ok: .ok
        case .login: .login
        case .refresh: .refresh
        case .tokens: .tokens
        case .logout: .logout
        case .credit: .credit
        case .ping: .ping
        case .pong: .pong
        case .confirm: .confirm
        case .register: .register
        case .unregister: .unregister
        case .discover: .discover
        case .discovered: .discovered
        case .heartbeat: .heartbeat
        case .send: .send
        case .broadcast: .broadcast
        case .publish: .publish
        case .subscribe: .subscribe
        case .unsubscribe: .unsubscribe
        case .deliver: .deliver
        case .ack: .ack
        case .nack: .nack
        case .request: .request
        case .reply: .reply
        case .response: .response
        case .streamOpen: .streamOpen
        case .streamChunk: .streamChunk
        case .streamEnd: .streamEnd
        case .streamResume: .streamResume
        case .streamStatus: .streamStatus
        case .streamAbort: .streamAbort
        case .contextWrite: .contextWrite
        case .contextGet: .contextGet
        case .contextList: .contextList
        case .contextHistory: .contextHistory
        case .contextWatch: .contextWatch
        case .contextUnwatch: .contextUnwatch
        case .contextLineage: .contextLineage
        case .context: .context
        case .contextPage: .contextPage
        case .contextEvent: .contextEvent
        case .contextWatching: .contextWatching
        case .keyPublish: .keyPublish
        case .keyFetch: .keyFetch
        case .key: .key
        }
    }

    /// Size of the length prefix in front of every frame.
    public static let headerBytes = 4

    /// Appends the frame, length prefix included, to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        if case .deliver(let deliver) = self { return deliver.encodeFrame(into: &buffer) }
        let start = buffer.writerIndex
        buffer.writeMultipleIntegers(UInt32(0), type.rawValue)
        writeBody(into: &buffer)
        buffer.setInteger(UInt32(buffer.writerIndex - start - Self.headerBytes), at: start)
    }

    /// Writes the body with a direct call per case: going through `any FrameBody` would box every
    /// body larger than three words, an allocation per frame on the hot path.
    private func writeBody(into buffer: inout ByteBuffer) {
        switch self {
        case .hello(let body): body.write(to: &buffer)
        case .welcome(let body): body.write(to: &buffer)
        case .error(let body): body.write(to: &buffer)
        case .goAway(let body): body.write(to: &buffer)
        case .ok(let body): body.write(to: &buffer)
        case .login(let body): body.write(to: &buffer)
        case .refresh(let body): body.write(to: &buffer)
        case .tokens(let body): body.write(to: &buffer)
        case .logout(let body), .ping(let body), .pong(let body), .confirm(let body): body.write(to: &buffer)
        case .credit(let body): body.write(to: &buffer)
        case .register(let body): body.write(to: &buffer)
        case .unregister(let body): body.write(to: &buffer)
        case .discover(let body): body.write(to: &buffer)
        case .discovered(let body): body.write(to: &buffer)
        case .heartbeat(let body): body.write(to: &buffer)
        case .send(let body), .request(let body): body.write(to: &buffer)
        case .broadcast(let body), .publish(let body): body.write(to: &buffer)
        case .subscribe(let body), .unsubscribe(let body): body.write(to: &buffer)
        case .deliver(let body): body.write(to: &buffer)
        case .ack(let body), .nack(let body): body.write(to: &buffer)
        case .reply(let body): body.write(to: &buffer)
        case .response(let body): body.write(to: &buffer)
        case .streamOpen(let body): body.write(to: &buffer)
        case .streamChunk(let body): body.write(to: &buffer)
        case .streamEnd(let body): body.write(to: &buffer)
        case .streamResume(let body): body.write(to: &buffer)
        case .streamStatus(let body): body.write(to: &buffer)
        case .streamAbort(let body): body.write(to: &buffer)
        case .contextWrite(let body): body.write(to: &buffer)
        case .contextGet(let body): body.write(to: &buffer)
        case .contextList(let body): body.write(to: &buffer)
        case .contextHistory(let body), .contextLineage(let body): body.write(to: &buffer)
        case .contextWatch(let body): body.write(to: &buffer)
        case .contextUnwatch(let body): body.write(to: &buffer)
        case .context(let body): body.write(to: &buffer)
        case .contextPage(let body): body.write(to: &buffer)
        case .contextEvent(let body): body.write(to: &buffer)
        case .contextWatching(let body): body.write(to: &buffer)
        case .keyPublish(let body): body.write(to: &buffer)
        case .keyFetch(let body): body.write(to: &buffer)
        case .key(let body): body.write(to: &buffer)
        }
    }

    /// Decodes one frame from `buffer` if a whole one is there, consuming it.
    ///
    /// - Returns: nil when more bytes are needed (nothing is consumed).
    /// - Throws: ``BusError`` ``ErrorCode/tooLarge`` for a length over `maxFrameBytes` (checked before
    ///   waiting for the bytes, so an oversized length never makes the reader buffer it), and
    ///   ``ErrorCode/badFrame`` for an empty frame, an unknown type or a malformed body.
    public static func decode(from buffer: inout ByteBuffer, maxFrameBytes: UInt32) throws(BusError) -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length <= maxFrameBytes else {
            throw BusError(.tooLarge, "frame of \(length) bytes exceeds the limit of \(maxFrameBytes)")
        }
        guard length >= 1 else { throw BusError(.badFrame, "empty frame") }
        guard buffer.readableBytes >= headerBytes + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: headerBytes)
        var frame = buffer.readSlice(length: Int(length))!  // length checked just above
        let raw = frame.readInteger(as: UInt8.self)!  // length >= 1
        guard let type = FrameType(rawValue: raw) else { throw BusError(.badFrame, "unknown frame type \(raw)") }
        let decoded = frame.withUnsafeReadableBytes { bytes -> Result<Frame, BusError> in
            var reader = WireReader(frame, bytes: bytes)
            do throws(BusError) {
                let decoded = try decodeBody(type, &reader)
                try reader.finish(type)
                return .success(decoded)
            } catch {
                return .failure(error)
            }
        }
        return try decoded.get()
    }

    private static func decodeBody(_ type: FrameType, _ r: inout WireReader) throws(BusError) -> Frame {
        switch type {
        case .hello: .hello(try Hello(reading: &r))
        case .welcome: .welcome(try Welcome(reading: &r))
        case .error: .error(try ErrorFrame(reading: &r))
        case .goAway: .goAway(try GoAway(reading: &r))
        case .ok: .ok(try Ok(reading: &r))
        case .login: .login(try Login(reading: &r))
        case .refresh: .refresh(try Refresh(reading: &r))
        case .tokens: .tokens(try Tokens(reading: &r))
        case .logout: .logout(try RefOnly(reading: &r))
        case .credit: .credit(try Credit(reading: &r))
        case .ping: .ping(try RefOnly(reading: &r))
        case .pong: .pong(try RefOnly(reading: &r))
        case .confirm: .confirm(try RefOnly(reading: &r))
        case .register: .register(try Register(reading: &r))
        case .unregister: .unregister(try RefOnly(reading: &r))
        case .discover: .discover(try Discover(reading: &r))
        case .discovered: .discovered(try Discovered(reading: &r))
        case .heartbeat: .heartbeat(try Heartbeat(reading: &r))
        case .send: .send(try Send(reading: &r))
        case .broadcast: .broadcast(try Fanout(reading: &r))
        case .publish: .publish(try Fanout(reading: &r))
        case .subscribe: .subscribe(try PatternCommand(reading: &r))
        case .unsubscribe: .unsubscribe(try PatternCommand(reading: &r))
        case .deliver: .deliver(try Deliver(reading: &r))
        case .ack: .ack(try Ack(reading: &r))
        case .nack: .nack(try Ack(reading: &r))
        case .request: .request(try Send(reading: &r))
        case .reply: .reply(try Reply(reading: &r))
        case .response: .response(try Response(reading: &r))
        case .streamOpen: .streamOpen(try StreamOpen(reading: &r))
        case .streamChunk: .streamChunk(try StreamChunk(reading: &r))
        case .streamEnd: .streamEnd(try StreamEnd(reading: &r))
        case .streamResume: .streamResume(try StreamRef(reading: &r))
        case .streamStatus: .streamStatus(try StreamStatus(reading: &r))
        case .streamAbort: .streamAbort(try StreamAbort(reading: &r))
        case .contextWrite: .contextWrite(try ContextWrite(reading: &r))
        case .contextGet: .contextGet(try ContextGet(reading: &r))
        case .contextList: .contextList(try ContextList(reading: &r))
        case .contextHistory: .contextHistory(try ContextQuery(reading: &r))
        case .contextWatch: .contextWatch(try ContextWatch(reading: &r))
        case .contextUnwatch: .contextUnwatch(try ContextUnwatch(reading: &r))
        case .contextLineage: .contextLineage(try ContextQuery(reading: &r))
        case .context: .context(try ContextReply(reading: &r))
        case .contextPage: .contextPage(try ContextPage(reading: &r))
        case .contextEvent: .contextEvent(try ContextEvent(reading: &r))
        case .contextWatching: .contextWatching(try ContextWatching(reading: &r))
        case .keyPublish: .keyPublish(try KeyPublish(reading: &r))
        case .keyFetch: .keyFetch(try KeyFetch(reading: &r))
        case .key: .key(try KeyInfo(reading: &r))
        }
    }
}
