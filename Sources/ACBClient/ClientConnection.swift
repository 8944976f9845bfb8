import ACBTLS
import Bus
import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What a connection reports to its client.
protocol ClientConnectionDelegate: AnyObject, Sendable {
    func delivered(_ delivery: Delivery)
    func streamArrived(_ stream: IncomingStream)
    func connectionLost(_ connection: ClientConnection, goAway: GoAway?)
    /// A CONTEXT_EVENT of watch `event.watch`.
    func contextEvent(_ event: ContextEvent, on connection: ClientConnection)
    /// CONTEXT_WATCHING, seen before the events that follow it (and before its caller hears it).
    func watchStarted(_ watching: ContextWatching, on connection: ClientConnection)
    /// An ERROR that answers no command: it ends the watch `ref`, if there is one.
    func watchEnded(_ ref: UInt64, _ error: BusError, on connection: ClientConnection)
}

/// One TCP connection to the bus after a successful handshake: it matches answers to commands by
/// `ref`, coalesces acknowledgements, and assembles downloads.
final class ClientConnection: Sendable {
    private struct State {
        var nextRef: UInt64 = 0
        var calls: [UInt64: CheckedContinuation<Frame, any Error>] = [:]
        var acks = AckTracker()
        var ackFlushScheduled = false
        /// Deliveries handed to the application and not acknowledged yet.
        var handedOut: Set<UInt64> = []
        var uploads: [String: AsyncThrowingStream<StreamStatus, any Error>.Continuation] = [:]
        /// Context bodies coming as streams after their CONTEXT, by stream id (`context/<ref>`).
        var bodies: [String: AsyncThrowingStream<ByteBuffer, any Error>.Continuation] = [:]
        var goAway: GoAway?
        var closed = false
    }

    let channel: any Channel
    let welcome: Welcome
    private let state = NIOLockedValueBox(State())
    /// Downloads in progress by their stream id; touched only on the event loop.
    let downloads: NIOLoopBoundBox<[String: Download]>
    /// Broken downloads kept across connections for resumption; owned by the client.
    let partials: PartialDownloads
    let configuration: ClientConfiguration
    weak let delegate: (any ClientConnectionDelegate)?

    private init(
        channel: any Channel, welcome: Welcome, configuration: ClientConfiguration, partials: PartialDownloads,
        delegate: any ClientConnectionDelegate
    ) {
        self.channel = channel
        self.partials = partials
        self.welcome = welcome
        self.configuration = configuration
        self.delegate = delegate
        self.downloads = NIOLoopBoundBox([:], eventLoop: channel.eventLoop)
    }

    /// Connects, sends HELLO and waits for WELCOME.
    /// - Throws: the server's ``BusError`` (bad token, wrong version) or a connection error.
    /// - Parameter readiness: what each heartbeat announces; heartbeats start as soon as WELCOME is in,
    ///   on the event loop, so a busy task pool cannot make the bus think the agent went silent.
    static func open(
        _ configuration: ClientConfiguration, token: String, partials: PartialDownloads,
        delegate: any ClientConnectionDelegate, readiness: @escaping @Sendable () -> Readiness
    ) async throws
        -> ClientConnection
    {
        // Protocol 1: every SEND, BROADCAST and PUBLISH gets its own OK, which this API returns
        // (a fan-out's recipient count included, which protocol 2's CONFIRM does not carry).
        let (channel, answer) = try await connect(
            configuration, sending: .hello(Hello(version: 1, token: token, clientName: configuration.clientName)))
        switch answer {
        case .welcome(let welcome):
            return try await channel.eventLoop.submit {
                let connection = ClientConnection(
                    channel: channel, welcome: welcome, configuration: configuration, partials: partials,
                    delegate: delegate)
                guard channel.isActive,
                    let router = try? channel.pipeline.syncOperations.handler(type: ClientFrameRouter.self)
                else {
                    throw BusError(.unavailable, "the server closed the connection right after WELCOME")
                }
                router.attach(connection)
                connection.startHeartbeat(readiness)
                return connection
            }.get()
        case .error(let error):
            try? await channel.close()
            throw error.error
        default:
            try? await channel.close()
            throw BusError(.badFrame, "the server did not answer HELLO with WELCOME")
        }
    }

    /// Sends LOGIN or REFRESH on a connection of its own and returns the TOKENS it gets.
    /// - Throws: the server's ``BusError`` (`unauthenticated` for a wrong secret or a stale
    ///   refresh token) or a connection error.
    static func exchange(_ frame: Frame, _ configuration: ClientConfiguration) async throws -> Tokens {
        let (channel, answer) = try await connect(configuration, sending: frame)
        defer { channel.close(promise: nil) }
        switch answer {
        case .tokens(let tokens): return tokens
        case .error(let error): throw error.error
        case let other: throw BusError(.badFrame, "the server answered \(frame.type) with \(other.type)")
        }
    }

    /// Connects, sends `first` and waits for the server's first frame.
    private static func connect(_ configuration: ClientConfiguration, sending first: Frame) async throws -> (
        channel: any Channel, answer: Frame
    ) {
        let answer = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Frame.self)
        let channel: any Channel
        do {
            channel = try await connect(configuration, handshake: answer)
        } catch {
            answer.fail(error)
            throw error
        }
        do {
            try await channel.writeAndFlush(first)
            return (channel, try await answer.futureResult.get())
        } catch {
            try? await channel.close()
            throw error
        }
    }

    private static func connect(_ configuration: ClientConfiguration, handshake: EventLoopPromise<Frame>)
        async throws -> any Channel
    {
        try await ClientBootstrap(group: handshake.futureResult.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = configuration.tls {
                        try channel.pipeline.syncOperations.addHandler(
                            TLSHandler(context: tls, serverName: configuration.serverName ?? configuration.host))
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(FrameDecoder(maxFrameBytes: UInt32.max >> 1)),
                        MessageToByteHandler(FrameEncoder()),
                        ClientFrameRouter(handshake: handshake),
                    ])
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .get()
    }

    /// Sends a command built with a fresh `ref` and waits for its answer (OK, DISCOVERED, RESPONSE,
    /// STREAM_STATUS, CONTEXT, CONTEXT_PAGE); an ERROR answer is thrown as its ``BusError``.
    func call(_ build: (UInt64) -> Frame) async throws -> Frame {
        let answer: Frame = try await withCheckedThrowingContinuation { continuation in
            let ref: UInt64? = state.withLockedValue { state in
                guard !state.closed else { return nil }
                state.nextRef += 1
                state.calls[state.nextRef] = continuation
                return state.nextRef
            }
            guard let ref else { return continuation.resume(throwing: Self.closedError) }
            channel.writeAndFlush(build(ref), promise: nil)
        }
        if case .error(let error) = answer { throw error.error }
        return answer
    }

    /// Sends HEARTBEAT every interval WELCOME announced until the connection closes.
    /// Call once, on the event loop.
    private func startHeartbeat(_ readiness: @escaping @Sendable () -> Readiness) {
        let interval = TimeAmount.milliseconds(Int64(welcome.limits.heartbeatIntervalMs))
        let task = channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.fire(.heartbeat(Heartbeat(readiness: readiness())))
        }
        channel.closeFuture.whenComplete { _ in task.cancel() }
    }

    /// Sends a frame that gets no answer.
    func fire(_ frame: Frame) {
        channel.writeAndFlush(frame, promise: nil)
    }

    /// Records that delivery `id` is handled; ACKs go out coalesced, once per event-loop tick.
    func done(_ id: UInt64) {
        let schedule = state.withLockedValue { state in
            state.handedOut.remove(id)
            state.acks.done(id)
            defer { state.ackFlushScheduled = true }
            return !state.ackFlushScheduled
        }
        guard schedule else { return }
        channel.eventLoop.execute { [self] in
            let acks = state.withLockedValue { state in
                state.ackFlushScheduled = false
                return state.acks.takeAcks()
            }
            for ack in acks { channel.write(Frame.ack(ack), promise: nil) }
            channel.flush()
        }
    }

    /// Records that the application was handed delivery `id` (see ``acknowledgeHandedOut()``).
    func handedOut(_ id: UInt64) {
        state.withLockedValue { _ = $0.handedOut.insert(id) }
    }

    /// Acknowledges every delivery handed to the application, before a close: it had them, and
    /// closing says it is done. Completes once the ACKs are written.
    func acknowledgeHandedOut() -> EventLoopFuture<Void> {
        let acks = state.withLockedValue { state in
            for id in state.handedOut { state.acks.done(id) }
            state.handedOut.removeAll()
            return state.acks.takeAcks()
        }
        guard let last = acks.last else { return channel.eventLoop.makeSucceededVoidFuture() }
        for ack in acks.dropLast() { channel.write(Frame.ack(ack), promise: nil) }
        return channel.writeAndFlush(Frame.ack(last))
    }

    /// Asks for `id` to be delivered again later. The id counts as settled for acknowledgement,
    /// so later ids still collapse into cumulative ACKs (the NACK goes out first).
    func nack(_ id: UInt64) {
        fire(.nack(Ack(deliveryID: id)))
        done(id)
    }

    /// The STREAM_STATUS progress reports of an upload. It ends with the bus's error if the bus
    /// aborts the upload, and with ``closedError`` if the connection closes.
    func watchUpload(_ streamID: String) -> AsyncThrowingStream<StreamStatus, any Error> {
        let (stream, continuation) = AsyncThrowingStream<StreamStatus, any Error>.makeStream()
        let closed = state.withLockedValue { state in
            if !state.closed { state.uploads[streamID] = continuation }
            return state.closed
        }
        if closed { continuation.finish(throwing: Self.closedError) }
        return stream
    }

    /// The chunks of the context body that CONTEXT_GET `ref` may be answered with (status
    /// `streamed`), in order; the stream ends at STREAM_END, or with ``closedError``. Call it before
    /// the GET goes out; ``unwatchBody(ref:)`` if the answer carries the body inline.
    func watchBody(ref: UInt64) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (stream, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let closed = state.withLockedValue { state in
            if !state.closed { state.bodies[ContextReply.streamID(ref: ref)] = continuation }
            return state.closed
        }
        if closed { continuation.finish(throwing: Self.closedError) }
        return stream
    }

    func unwatchBody(ref: UInt64) {
        state.withLockedValue { $0.bodies.removeValue(forKey: ContextReply.streamID(ref: ref)) }?.finish()
    }

    func unwatchUpload(_ streamID: String) {
        state.withLockedValue { $0.uploads.removeValue(forKey: streamID) }?.finish()
    }

    var isActive: Bool { !state.withLockedValue { $0.closed } }

    static let closedError = BusError(.unavailable, "the connection to the bus is closed")

    /// Whether the connection closed: what it delivered and nobody acknowledged comes again on the next.
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// Handles a frame from the server. Runs on the channel's event loop.
    func received(_ frame: Frame) {
        switch frame {
        case .ok(let ok): answer(ok.ref, frame)
        case .discovered(let page): answer(page.ref, frame)
        case .response(let response): answer(response.ref, frame)
        case .context(let reply): answer(reply.ref, frame)
        case .contextPage(let page): answer(page.ref, frame)
        case .key(let key): answer(key.ref, frame)
        case .contextWatching(let watching):
            delegate?.watchStarted(watching, on: self)
            answer(watching.ref, frame)
        case .error(let error):
            if !answer(error.ref, frame), error.ref != 0 { delegate?.watchEnded(error.ref, error.error, on: self) }
        case .contextEvent(let event): delegate?.contextEvent(event, on: self)
        case .streamStatus(let status):
            if status.ref != 0 { answer(status.ref, frame) }
            _ = state.withLockedValue { $0.uploads[status.streamID] }?.yield(status)
        case .streamAbort(let abort):
            state.withLockedValue { $0.uploads.removeValue(forKey: abort.streamID) }?
                .finish(throwing: BusError(abort.code, abort.message))
            abortDownload(abort.streamID)
        case .deliver(let deliver):
            delegate?.delivered(Delivery(deliver, connection: self))
        case .streamOpen(let open): beginDownload(open)
        case .streamChunk(let chunk):
            if let body = state.withLockedValue({ $0.bodies[chunk.streamID] }) {
                body.yield(chunk.data)
            } else {
                downloadChunk(chunk)
            }
        case .streamEnd(let end):
            if let body = state.withLockedValue({ $0.bodies.removeValue(forKey: end.streamID) }) {
                body.finish()
            } else {
                finishDownload(end)
            }
        case .goAway(let goAway): state.withLockedValue { $0.goAway = goAway }
        default: break
        }
    }

    /// The channel closed: every waiting call fails, every upload watcher ends.
    func closed() {
        let (calls, uploads, bodies, goAway) = state.withLockedValue { state in
            state.closed = true
            defer {
                state.calls.removeAll()
                state.uploads.removeAll()
                state.bodies.removeAll()
            }
            return (Array(state.calls.values), Array(state.uploads.values), Array(state.bodies.values), state.goAway)
        }
        let error = goAway.map { BusError($0.code, $0.message) } ?? Self.closedError
        for call in calls { call.resume(throwing: error) }
        for upload in uploads { upload.finish(throwing: Self.closedError) }
        for body in bodies { body.finish(throwing: Self.closedError) }
        for download in downloads.value.values { partials.keep(download) }
        downloads.value.removeAll()
        delegate?.connectionLost(self, goAway: goAway)
    }

    /// Hands `frame` to the call waiting for `ref`. - Returns: false if none waits.
    @discardableResult
    private func answer(_ ref: UInt64, _ frame: Frame) -> Bool {
        guard ref != 0, let call = state.withLockedValue({ $0.calls.removeValue(forKey: ref) }) else { return false }
        call.resume(returning: frame)
        return true
    }
}

/// Routes inbound frames: the handshake answer to its promise, frames that arrive before the
/// connection object exists to a buffer, and everything after to the connection.
private final class ClientFrameRouter: ChannelInboundHandler {
    typealias InboundIn = Frame

    private enum State {
        case handshaking(EventLoopPromise<Frame>)
        case buffering([Frame])
        case connected(ClientConnection)
        case closed
    }

    private var state: State

    init(handshake: EventLoopPromise<Frame>) { self.state = .handshaking(handshake) }

    /// Hands the connection every frame from now on, starting with those buffered.
    func attach(_ connection: ClientConnection) {
        guard case .buffering(let frames) = state else { return connection.closed() }
        state = .connected(connection)
        for frame in frames { connection.received(frame) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch state {
        case .handshaking(let promise):
            state = .buffering([])
            promise.succeed(frame)
        case .buffering(var frames):
            frames.append(frame)
            state = .buffering(frames)
        case .connected(let connection):
            connection.received(frame)
        case .closed:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .handshaking(let promise): promise.fail(ClientConnection.closedError)
        case .connected(let connection): connection.closed()
        case .buffering, .closed: break
        }
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .handshaking(let promise) = state {
            promise.fail(error)  // a TLS failure, say: more telling than "closed"
            state = .closed
        }
        context.close(promise: nil)
    }
}
