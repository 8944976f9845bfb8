public import NIOCore

/// TLS as the first handler of a pipeline: ciphertext below it, plaintext above it.
///
/// States: handshaking → active → closed. Writes wait until the handshake is done; once active,
/// everything written before a flush is encrypted in one `SSL_write`, so a burst of small frames
/// becomes few records. A handshake failure sends OpenSSL's alert, fires ``TLSError`` and closes.
public final class TLSHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case handshaking
        case active
        case closed
    }

    private var state = State.handshaking
    private let connection: TLSConnection
    private let isClient: Bool
    /// Plaintext written and not yet encrypted, with its promises.
    private var pending: CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)> = []
    /// A flush arrived during the handshake: encrypt `pending` as soon as it completes.
    private var flushWanted = false
    /// Where pending writes are joined before one `SSL_write`; reused.
    private var joined: ByteBuffer?

    /// The common name of the peer's verified certificate, known once the handshake is done.
    public private(set) var peerCommonName: String?

    /// A server's handler (from a server context) or a client's (from a client context); a client
    /// checks that the server's certificate names `serverName`.
    public init(context: TLSContext, serverName: String? = nil) throws(TLSError) {
        connection = try TLSConnection(context: context, serverName: serverName)
        isClient = !context.isServer
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if isClient, context.channel.isActive { advance(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if isClient { advance(context) }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .closed = state else {
            connection.receive(unwrapInboundIn(data))
            return advance(context)
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .closed = state else { return pending.append((unwrapOutboundIn(data), promise)) }
        promise?.fail(ChannelError.ioOnClosedChannel)
    }

    public func flush(context: ChannelHandlerContext) {
        switch state {
        case .handshaking: flushWanted = true
        case .active: encryptPending(context)
        case .closed: break
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if case .active = state, mode == .all {
            encryptPending(context)
            connection.shutdown()
            sendOutput(context)
        }
        becomeClosed()
        context.close(mode: mode, promise: promise)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        becomeClosed()
        context.fireChannelInactive()
    }

    /// Runs the handshake while it lasts, then decrypts what has arrived.
    private func advance(_ context: ChannelHandlerContext) {
        if case .handshaking = state {
            switch connection.handshake() {
            case .incomplete:
                return sendOutput(context)
            case .failed(let error):
                return fail(error, context)
            case .complete:
                state = .active
                peerCommonName = connection.peerCommonName
                sendOutput(context)
                context.fireUserInboundEventTriggered(TLSHandshakeCompleted(version: connection.version))
                if flushWanted { encryptPending(context) }
            }
        }
        guard case .active = state else { return }
        var plaintext = context.channel.allocator.buffer(capacity: 0)
        let end = connection.read(into: &plaintext)
        sendOutput(context)  // reading can answer the peer (key updates, session tickets)
        if plaintext.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(plaintext)) }
        switch end {
        case .wantMore: break
        case .closedByPeer: context.close(promise: nil)
        case .failed(let error): fail(error, context)
        }
    }

    private func encryptPending(_ context: ChannelHandlerContext) {
        flushWanted = false
        guard !pending.isEmpty else { return }
        var promises: [EventLoopPromise<Void>] = []
        do throws(TLSError) {
            if pending.count == 1 {
                let (bytes, promise) = pending.removeFirst()
                if let promise { promises.append(promise) }
                try connection.write(bytes)
            } else {
                var joined = self.joined.take() ?? context.channel.allocator.buffer(capacity: 64 * 1024)
                joined.clear()
                while let (bytes, promise) = pending.popFirst() {
                    var bytes = bytes
                    joined.writeBuffer(&bytes)
                    if let promise { promises.append(promise) }
                }
                defer { self.joined = joined }
                try connection.write(joined)
            }
        } catch {
            promises.forEach { $0.fail(error) }
            return fail(error, context)
        }
        sendOutput(context, completing: promises)
    }

    /// Writes and flushes the ciphertext OpenSSL produced; `promises` complete with that write.
    private func sendOutput(_ context: ChannelHandlerContext, completing promises: [EventLoopPromise<Void>] = []) {
        guard let ciphertext = connection.takeOutput(allocator: context.channel.allocator) else {
            return promises.forEach { $0.succeed() }
        }
        var promise: EventLoopPromise<Void>?
        if let first = promises.first {
            promise = first
            for other in promises.dropFirst() { first.futureResult.cascade(to: other) }
        }
        context.writeAndFlush(wrapOutboundOut(ciphertext), promise: promise)
    }

    private func fail(_ error: TLSError, _ context: ChannelHandlerContext) {
        sendOutput(context)  // the alert, if OpenSSL wrote one
        becomeClosed()
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func becomeClosed() {
        state = .closed
        while let (_, promise) = pending.popFirst() { promise?.fail(ChannelError.ioOnClosedChannel) }
    }
}

/// Fired inbound when the TLS handshake has completed.
public struct TLSHandshakeCompleted: Sendable {
    /// The protocol version agreed, e.g. "TLSv1.3".
    public let version: String
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
