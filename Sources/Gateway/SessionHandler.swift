import ACBTLS
import Actors
import Bus
import Logging
import NIOCore

/// The last handler of an agent connection: decodes frames, runs the handshake, then hands every
/// frame to the connection's ``AgentSession`` on this event loop, with no hop and no task per frame.
///
/// It decodes with NIO's single-step processor rather than behind a `ByteToMessageHandler`: a frame
/// passed down the pipeline is boxed in `NIOAny` and cast back, a runtime cast per frame.
final class SessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingHello
        case authenticating
        case active(AgentSession)
        case closed
    }

    private var state = State.awaitingHello
    private var handshakeTimer: Scheduled<Void>?
    private let supervisor: Supervisor
    private let authority: TokenAuthority
    private let handshakeTimeout: TimeAmount
    /// Frames from the bytes read; keeps an incomplete frame until the rest arrives.
    private let decoder: NIOSingleStepByteToMessageProcessor<FrameDecoder>

    init(supervisor: Supervisor, authority: TokenAuthority, handshakeTimeout: TimeAmount, maxFrameBytes: UInt32) {
        self.supervisor = supervisor
        self.authority = authority
        self.handshakeTimeout = handshakeTimeout
        self.decoder = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxFrameBytes: maxFrameBytes))
    }

    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        handshakeTimer = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let (handler, context) = bound.value
            guard case .awaitingHello = handler.state else { return }
            handler.refuse(context, BusError(.unauthenticated, "no HELLO within the handshake timeout"))
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try decoder.process(buffer: unwrapInboundIn(data)) { frame in handle(frame, context: context) }
        } catch let error as BusError {
            failed(error, context: context)
        } catch {
            context.close(promise: nil)
        }
    }

    private func handle(_ frame: Frame, context: ChannelHandlerContext) {
        switch state {
        case .active(let session):
            session.assumeIsolated { $0.receive(frame) }
        case .awaitingHello:
            guard case .hello(let hello) = frame else {
                return refuse(context, BusError(.badFrame, "the first frame must be HELLO"))
            }
            guard hello.version == Limits.protocolVersion else {
                return refuse(
                    context,
                    BusError(
                        .unsupportedVersion,
                        "protocol version \(hello.version) is not supported; this server speaks \(Limits.protocolVersion)"
                    ))
            }
            state = .authenticating
            authenticate(hello, context: context)
        case .authenticating:
            refuse(context, BusError(.badFrame, "wait for WELCOME before sending \(frame.type)"))
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .active(let session) = state { session.assumeIsolated { $0.flush() } }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .active(let session) = state, context.channel.isWritable {
            session.assumeIsolated { $0.writable() }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        if case .active(let session) = state { session.assumeIsolated { $0.channelClosed() } }
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Decoding errors (oversized or malformed frames) end the connection with their code.
    private func failed(_ error: BusError, context: ChannelHandlerContext) {
        if case .active(let session) = state {
            session.assumeIsolated { $0.close(GoAway(code: error.code, message: error.message)) }
        } else {
            refuse(context, error)
        }
    }

    /// Verifies the token off the event loop (jwt-kit's key collection is an actor), then opens the
    /// session back on it. The task is unstructured because a channel handler cannot await; it is
    /// short-lived and holds only this connection.
    private func authenticate(_ hello: Hello, context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let (authority, loop) = (self.authority, context.eventLoop)
        Task {
            let result: Result<Identity, BusError>
            do throws(BusError) {
                result = .success(try await authority.verify(hello.token))
            } catch {
                result = .failure(error)
            }
            loop.execute {
                let (handler, context) = bound.value
                handler.authenticated(result, clientName: hello.clientName, context: context)
            }
        }
    }

    private func authenticated(
        _ result: Result<Identity, BusError>, clientName: String,
        context: ChannelHandlerContext
    ) {
        guard case .authenticating = state else { return }
        handshakeTimer?.cancel()
        do throws(BusError) {
            let identity = try result.get()
            try checkCertificate(of: identity, context)
            let session = try supervisor.openSession(identity: identity, channel: context.channel)
            state = .active(session)
            let welcome = Welcome(
                sessionID: UInt64(session.number), tenant: identity.tenant,
                agentID: identity.agentID, limits: supervisor.configuration.limits)
            answer(.welcome(welcome), context)
            session.assumeIsolated { $0.start() }
            supervisor.logger.debug(
                "session opened",
                metadata: [
                    "agent": "\(identity.key)", "client": "\(clientName)", "session": "\(session.number)",
                ])
        } catch {
            supervisor.record(
                "security.auth_failed", tenant: "", agentID: "",
                ["code": error.code.name, "client": clientName])
            refuse(context, error)
        }
    }

    /// Under mTLS a client certificate names its agent: the token must be that agent's.
    private func checkCertificate(of identity: Identity, _ context: ChannelHandlerContext) throws(BusError) {
        guard let tls = try? context.pipeline.syncOperations.handler(type: TLSHandler.self),
            let name = tls.peerCommonName, name != identity.agentID
        else { return }
        throw BusError(
            .unauthenticated, "the client certificate names '\(name)' but the token is for '\(identity.agentID)'")
    }

    /// Answers the handshake with ERROR and closes.
    private func refuse(_ context: ChannelHandlerContext, _ error: BusError) {
        state = .closed
        answer(.error(ErrorFrame(ref: 0, error: error)), context)
        context.close(promise: nil)
    }

    /// Writes a handshake answer (the session writes everything after WELCOME).
    private func answer(_ frame: Frame, _ context: ChannelHandlerContext) {
        var bytes = context.channel.allocator.buffer(capacity: 256)
        frame.encode(into: &bytes)
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }
}
