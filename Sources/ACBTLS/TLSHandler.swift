public import NIOCore

/// TLS as the first handler of a pipeline: ciphertext below it, plaintext above it.
///
/// States: handshaking → active → closed. Writes wait until the handshake is done; once active,
/// what is written is joined and encrypted in one `SSL_write` at each flush, or as soon as
/// ``encryptAtBytes`` are waiting, so a burst of small frames becomes few records while the channel
/// still sees every byte soon (its writability, and so backpressure, counts them). A handshake
/// failure sends OpenSSL's alert, fires ``TLSError`` and closes.
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

    /// Plaintext held before it is encrypted and passed on without waiting for a flush: four
    /// full-size records.
    public static let encryptAtBytes = 64 * 1024

    private var state = State.handshaking
    private let connection: TLSConnection
    private let isClient: Bool
    /// Plaintext written and not yet encrypted, with its promises.
    private var pending: CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)> = []
    private var pendingBytes = 0
    /// A flush arrived during the handshake: encrypt `pending` as soon as it completes.
    private var flushWanted = false
    /// Where small pending writes are joined before one `SSL_write`; reused while it stays small.
    private var joined: ByteBuffer?

    /// The peer's verified certificate, known once the handshake is done; nil if it sent none.
    public private(set) var peerCertificate: PeerCertificate?

    /// A server's handler, from a server context.
    public init(context: TLSContext) throws(TLSError) {
        guard context.isServer else { throw TLSError("a client handler needs the server's name") }
        connection = try TLSConnection(context: context, serverName: nil)
        isClient = false
    }

    /// A client's handler, from a client context: the server's certificate must name `serverName`
    /// (a host name or an IP address).
    public init(context: TLSContext, serverName: String) throws(TLSError) {
        guard !context.isServer else { throw TLSError("a server handler checks no server name") }
        connection = try TLSConnection(context: context, serverName: serverName)
        isClient = true
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
            do {
                try connection.receive(unwrapInboundIn(data))
            } catch {
                return fail(error, context)
            }
            return advance(context)
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .closed = state else {
            let bytes = unwrapOutboundIn(data)
            pending.append((bytes, promise))
            pendingBytes += bytes.readableBytes
            if case .active = state, pendingBytes >= Self.encryptAtBytes { encryptPending(context, flush: false) }
            return
        }
        promise?.fail(ChannelError.ioOnClosedChannel)
    }

    public func flush(context: ChannelHandlerContext) {
        switch state {
        case .handshaking: flushWanted = true
        case .active: encryptPending(context, flush: true)
        case .closed: break
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else { return context.close(mode: mode, promise: promise) }
        if case .active = state {
            encryptPending(context, flush: false)
        }
        if case .active = state {  // still: encrypting can fail, and then the channel is closing already
            connection.shutdown()
            sendOutput(context, flush: true)
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
                return sendOutput(context, flush: true)
            case .failed(let error):
                return fail(error, context)
            case .complete:
                state = .active
                peerCertificate = connection.peerCertificate
                sendOutput(context, flush: true)
                context.fireUserInboundEventTriggered(TLSHandshakeCompleted(version: connection.version))
                if flushWanted || pendingBytes >= Self.encryptAtBytes { encryptPending(context, flush: true) }
            }
        }
        guard case .active = state else { return }
        var plaintext = context.channel.allocator.buffer(capacity: connection.readableBound)
        let end = connection.read(into: &plaintext)
        sendOutput(context, flush: true)  // reading can answer the peer (key updates)
        if plaintext.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(plaintext)) }
        switch end {
        case .wantMore: break
        case .closedByPeer: context.close(promise: nil)
        case .failed(let error): fail(error, context)
        }
    }

    private func encryptPending(_ context: ChannelHandlerContext, flush: Bool) {
        if flush { flushWanted = false }
        guard !pending.isEmpty else {
            if flush { context.flush() }
            return
        }
        var promises: [EventLoopPromise<Void>] = []
        do throws(TLSError) {
            if pending.count == 1 {
                let (bytes, promise) = pending.removeFirst()
                if let promise { promises.append(promise) }
                try connection.write(bytes)
            } else {
                var joined = self.joined.take() ?? context.channel.allocator.buffer(capacity: Self.encryptAtBytes)
                joined.clear()
                while let (bytes, promise) = pending.popFirst() {
                    var bytes = bytes
                    joined.writeBuffer(&bytes)
                    if let promise { promises.append(promise) }
                }
                try connection.write(joined)
                // Keep it for the next flush unless one large write made it grow.
                if joined.capacity <= 2 * Self.encryptAtBytes { self.joined = joined }
            }
            pendingBytes = 0
        } catch {
            promises.forEach { $0.fail(error) }
            return fail(error, context)
        }
        sendOutput(context, flush: flush, completing: promises)
    }

    /// Passes on the ciphertext OpenSSL produced; `promises` complete with that write.
    private func sendOutput(
        _ context: ChannelHandlerContext, flush: Bool, completing promises: [EventLoopPromise<Void>] = []
    ) {
        guard let ciphertext = connection.takeOutput(allocator: context.channel.allocator) else {
            promises.forEach { $0.succeed() }
            if flush { context.flush() }
            return
        }
        var promise: EventLoopPromise<Void>?
        if let first = promises.first {
            promise = first
            for other in promises.dropFirst() { first.futureResult.cascade(to: other) }
        }
        context.write(wrapOutboundOut(ciphertext), promise: promise)
        if flush { context.flush() }
    }

    private func fail(_ error: TLSError, _ context: ChannelHandlerContext) {
        sendOutput(context, flush: true)  // the alert, if OpenSSL wrote one
        becomeClosed()
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func becomeClosed() {
        state = .closed
        pendingBytes = 0
        while let (_, promise) = pending.popFirst() { promise?.fail(ChannelError.ioOnClosedChannel) }
    }
}

/// Fired inbound when the TLS handshake has completed.
public struct TLSHandshakeCompleted: Sendable {
    /// The protocol version agreed, e.g. "TLSv1.3".
    public let version: String
}

/// What a verified peer certificate says about its holder.
public struct PeerCertificate: Sendable, Equatable {
    /// The subject's common name (CN), if it has one.
    public var commonName: String?
    /// The subject's organizational unit (OU), if it has one.
    public var organizationalUnit: String?
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
