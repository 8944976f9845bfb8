import ACBTLS
import NIOCore
import NIOPosix

/// The side of a harness connection that a behaviour drives; used on the connection's event loop.
protocol Outbox: AnyObject {
    var eventLoop: any EventLoop { get }
    func send(to agent: String, _ payload: ByteBuffer, durable: Bool)
    func request(to agent: String, _ payload: ByteBuffer)
    func reply(_ handle: ReplyHandle, _ payload: ByteBuffer)
    func publish(topic: String, _ payload: ByteBuffer)
    func broadcast(_ payload: ByteBuffer)
    /// A context operation; ``ContextCommand`` says how each is answered.
    func context(_ command: ContextCommand)
    func keepAlive()
    /// How often a silent agent must call ``keepAlive()``; nil if never.
    var keepAliveInterval: TimeAmount? { get }
    /// Whether the channel takes writes: NIO's buffer of unwritten bytes is below its high-water mark.
    var isWritable: Bool { get }
    /// How many more sends, broadcasts and publishes the server's credit allows (``BenchWire/sendCredit``).
    var sendCredit: Int { get }
    /// Writes what the behaviour queued since the last flush (the connection also flushes after each read batch).
    func flush()
}

/// What a scenario does with one connection, called on the connection's event loop.
protocol Behaviour: AnyObject, SendableMetatype {
    /// The handshake and the subscriptions are done.
    func attached(_ outbox: any Outbox)
    func received(_ event: WireEvent, outbox: any Outbox)
    /// A read batch ended; the connection flushes right after.
    func readComplete(_ outbox: any Outbox)
    /// The channel takes writes again, after it had stopped (its unwritten bytes fell below NIO's
    /// low-water mark).
    func writable(_ outbox: any Outbox)
}

extension Behaviour {
    func attached(_ outbox: any Outbox) {}
    func received(_ event: WireEvent, outbox: any Outbox) {}
    func readComplete(_ outbox: any Outbox) {}
    func writable(_ outbox: any Outbox) {}
}

/// One harness agent's connection: speaks `W` and hands events to its behaviour.
///
/// Writes are gathered in one buffer and flushed once per read batch or pump, so the harness pays
/// one syscall per batch, not per message — for both servers alike. The subscriptions go out right
/// behind the handshake (ACB protocol 2 runs them after WELCOME; NATS after CONNECT), or once it is
/// answered where the wire cannot pipeline them (ACB protocol 1), and the behaviour is attached once
/// the handshake and every subscription are answered.
final class BenchConnection<W: BenchWire>: ChannelInboundHandler, Outbox {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var wire: W
    private let behaviour: any Behaviour
    private let subscriptions: [String]
    /// Setup answers still awaited: the handshake's, then one per subscription.
    private var unsynced: Int
    private let ready: EventLoopPromise<Void>
    private var isAttached = false
    private var isSettled = false
    /// Why the connection ended or was told off, once it was.
    let status = ConnectionStatus()
    private var context: ChannelHandlerContext?
    private var input = ByteBuffer()
    private var output = ByteBuffer()
    private var events: [WireEvent] = []

    init(wire: W, behaviour: any Behaviour, subscriptions: [String], ready: EventLoopPromise<Void>) {
        self.wire = wire
        self.behaviour = behaviour
        self.subscriptions = subscriptions
        self.unsynced = 1 + subscriptions.count
        self.ready = ready
    }

    var eventLoop: any EventLoop { context!.eventLoop }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        settle(.failure(WireError("the connection closed before its setup finished")))
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        wire.handshake(into: &output)
        if wire.pipelinesSetup { subscribe() }
        flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if input.readableBytes == 0 {
            input = bytes
        } else {
            // Only the unread tail moves to the new buffer: consumed bytes are never carried along.
            var joined = context.channel.allocator.buffer(capacity: input.readableBytes + bytes.readableBytes)
            joined.writeBuffer(&input)
            joined.writeBuffer(&bytes)
            input = joined
        }
        do {
            try wire.parse(&input, into: &events, out: &output)
        } catch {
            fail(error)
            return
        }
        for event in events { dispatch(event) }
        events.removeAll(keepingCapacity: true)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        wire.readComplete(out: &output)
        if isAttached { behaviour.readComplete(self) }
        flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if isAttached {
            dispatch(.closed("connection_closed"))
        } else {
            settle(.failure(WireError("the server closed the connection during the handshake")))
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if isAttached, context.channel.isWritable { behaviour.writable(self) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
    }

    private func fail(_ error: any Error) {
        if !isAttached { settle(.failure(error)) }
        context?.close(promise: nil)
    }

    /// Completes the setup promise once, however many ways the setup ends.
    private func settle(_ result: Result<Void, any Error>) {
        guard !isSettled else { return }
        isSettled = true
        ready.completeWith(result)
    }

    private func dispatch(_ event: WireEvent) {
        if case .closed(let reason) = event, status.reason == nil { status.reason = reason }
        if isAttached { return behaviour.received(event, outbox: self) }
        switch event {
        case .ready, .synced:
            // Written behind this read batch, like any answer.
            if case .ready = event, !wire.pipelinesSetup { subscribe() }
            unsynced -= 1
            if unsynced == 0 { attach() }
        case .refused(let code), .closed(let code): fail(WireError("refused during setup: \(code)"))
        default: break
        }
    }

    private func subscribe() {
        for pattern in subscriptions { wire.subscribe(pattern, into: &output) }
    }

    private func attach() {
        isAttached = true
        settle(.success(()))
        behaviour.attached(self)
    }

    func send(to agent: String, _ payload: ByteBuffer, durable: Bool) {
        wire.send(to: agent, payload, durable: durable, into: &output)
    }
    func request(to agent: String, _ payload: ByteBuffer) { wire.request(to: agent, payload, into: &output) }
    func reply(_ handle: ReplyHandle, _ payload: ByteBuffer) { wire.reply(handle, payload, into: &output) }
    func publish(topic: String, _ payload: ByteBuffer) { wire.publish(topic: topic, payload, into: &output) }
    func broadcast(_ payload: ByteBuffer) { wire.broadcast(payload, into: &output) }
    func context(_ command: ContextCommand) { wire.context(command, into: &output) }
    func keepAlive() { wire.keepAlive(into: &output) }
    var keepAliveInterval: TimeAmount? { wire.keepAliveInterval }
    var isWritable: Bool { context?.channel.isWritable ?? false }
    var sendCredit: Int { wire.sendCredit }

    func flush() {
        guard output.readableBytes > 0, let context else { return }
        // Taken before the write: a write can call back into the behaviour (writability) at once.
        let batch = output
        output = context.channel.allocator.buffer(capacity: 0)
        context.writeAndFlush(wrapOutboundOut(batch), promise: nil)
    }
}

/// A connected harness agent: its channel, and its behaviour reachable from any thread through the
/// channel's event loop.
struct Agent<B: Behaviour>: Sendable {
    let channel: any Channel
    let behaviour: NIOLoopBound<B>
    let status: NIOLoopBound<ConnectionStatus>

    /// Why the connection ended or was told off, if it was.
    func disconnect() async throws -> String? {
        let status = self.status
        return try await channel.eventLoop.submit { status.value.reason }.get()
    }

    /// Runs `body` with the behaviour on its event loop.
    func run<T: Sendable>(_ body: @escaping @Sendable (B) -> T) async throws -> T {
        let behaviour = self.behaviour
        return try await channel.eventLoop.submit { body(behaviour.value) }.get()
    }

    func close() async {
        try? await channel.close()
    }

    /// Connects, completes the handshake and the subscriptions over a wire made by `wire`, and
    /// attaches a behaviour made on the connection's event loop.
    static func connect<W: BenchWire>(
        wire: @escaping @Sendable () -> W, host: String, port: Int, tls: TLSContext?,
        subscriptions: [String], group: any EventLoopGroup, make: @escaping @Sendable () -> B
    ) async throws -> Agent<B> {
        let (channel, behaviour, status, ready) = try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let behaviour = make()
                    let ready = channel.eventLoop.makePromise(of: Void.self)
                    let connection = BenchConnection(
                        wire: wire(), behaviour: behaviour,
                        subscriptions: subscriptions, ready: ready)
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverName: host))
                    }
                    try channel.pipeline.syncOperations.addHandler(connection)
                    return (
                        channel, NIOLoopBound(behaviour, eventLoop: channel.eventLoop),
                        NIOLoopBound(connection.status, eventLoop: channel.eventLoop), ready.futureResult
                    )
                }
            }
        do {
            try await ready.get()
        } catch {
            try? await channel.close()
            throw error
        }
        return Agent(channel: channel, behaviour: behaviour, status: status)
    }
}

/// How a harness connection ended, read by the scenario after its run.
final class ConnectionStatus {
    /// GOAWAY's code, NATS's -ERR text, or `connection_closed`; nil while all is well.
    var reason: String?
}
