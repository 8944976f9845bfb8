import ACBTLS
import Actors
import Bus
import Foundation
import Logging
import NIOCore

/// The last handler of an agent connection: decodes frames, runs the handshake, then hands every
/// frame to the connection's ``AgentSession`` on this event loop, with no hop and no task per frame.
///
/// It decodes with a ``FrameReader`` rather than behind a `ByteToMessageHandler`: a frame passed
/// down the pipeline is boxed in `NIOAny` and cast back, a runtime cast per frame, and the reader
/// decodes each read in place instead of copying it into a buffer of its own.
final class SessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Before HELLO: one LOGIN or REFRESH may come first, to obtain tokens.
        case awaitingHello(exchanged: Bool)
        /// A HELLO, LOGIN or REFRESH is being checked off the event loop. A protocol 2 HELLO's
        /// `held` keeps the frames pipelined behind it, run once WELCOME is out; nil refuses them.
        case checking(held: [Frame]?)
        /// The session is open and waits until every node can find it (a cluster's directory names
        /// this node) for WELCOME; `held` as in `checking`.
        case opening(AgentSession, TokenAuthority.Verified, held: [Frame]?)
        /// The session, and the access token that opened it (LOGOUT revokes it).
        case active(AgentSession, TokenAuthority.Verified)
        case closed
    }

    private var state = State.awaitingHello(exchanged: false)
    /// The handshake deadline (from accept), then the access token's expiry.
    private var timer: Scheduled<Void>?
    private let supervisor: Supervisor
    private let authenticator: Authenticator
    private let handshakeTimeout: TimeAmount
    /// Frames from the bytes read; keeps an incomplete frame until the rest arrives.
    private var reader: FrameReader
    /// Whether a read's frames are being handled.
    private var reading = false
    /// Reads that arrived meanwhile (a failed flush makes NIO read the socket again from inside the
    /// handling): decoded once that read is done, in order.
    private var laterReads: [ByteBuffer] = []

    init(supervisor: Supervisor, authenticator: Authenticator, handshakeTimeout: TimeAmount, maxFrameBytes: UInt32) {
        self.supervisor = supervisor
        self.authenticator = authenticator
        self.handshakeTimeout = handshakeTimeout
        self.reader = FrameReader(maxFrameBytes: maxFrameBytes)
    }

    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let (handler, context) = bound.value
            switch handler.state {
            case .awaitingHello, .checking:
                handler.refuse(context, BusError(.unauthenticated, "no HELLO within the handshake timeout"))
            case .opening, .active, .closed:
                break
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !reading else { return laterReads.append(unwrapInboundIn(data)) }
        reading = true
        defer {
            reading = false
            laterReads.removeAll()
        }
        var bytes = unwrapInboundIn(data)
        while true {
            let error: BusError?
            if case .active(let session, _) = state {
                // The hot path: one isolation check per read, not one per frame (a pipelining
                // client's read holds dozens), and the state's payload copied once.
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                error = session.assumeIsolated { session in
                    let (handler, context) = bound.value
                    session.heard()
                    return handler.read(bytes) { frame in handler.handle(frame, in: session, context) }
                }
            } else {
                error = read(bytes) { frame in handle(frame, context: context) }
            }
            if let error { return failed(error, context: context) }
            guard !laterReads.isEmpty else { return }
            bytes = laterReads.removeFirst()
        }
    }

    /// The frames of `bytes`, each given to `body`; a decoding error stops them.
    private func read(_ bytes: ByteBuffer, _ body: (Frame) -> Void) -> BusError? {
        do throws(BusError) {
            try reader.read(bytes, body)
            return nil
        } catch {
            return error
        }
    }

    /// A frame read while the session is open goes to it; LOGOUT, and a frame read after the
    /// connection closed, take the general path.
    private func handle(_ frame: Frame, in session: isolated AgentSession, _ context: ChannelHandlerContext) {
        guard case .active = state else { return handle(frame, context: context) }
        guard case .logout = frame else { return session.receive(frame) }
        handle(frame, context: context)
    }

    /// Any frame, in any state: the handshake's, those held behind a HELLO, and LOGOUT.
    private func handle(_ frame: Frame, context: ChannelHandlerContext) {
        if case .active(let session, _) = state {
            guard case .logout(let command) = frame else { return session.assumeIsolated { $0.receive(frame) } }
            return logout(command, context)
        }
        switch (state, frame) {
        case (.active, _), (.closed, _):
            break
        case (.awaitingHello, .hello(let hello)):
            let versions = Limits.protocolVersions
            guard versions.contains(hello.version) else {
                return refuse(
                    context,
                    BusError(
                        .unsupportedVersion,
                        "protocol version \(hello.version) is not supported; this server speaks \(versions.lowerBound) to \(versions.upperBound)"
                    ))
            }
            let certificate = peerCertificate(context)
            check(context, holding: hello.version >= 2) { [authenticator] () async throws(BusError) in
                try await authenticator.hello(hello.token, certificate: certificate)
            } then: { handler, token, held in
                handler.open(token, hello: hello, held: held, context: context)
            }
        case (.awaitingHello(exchanged: true), .login), (.awaitingHello(exchanged: true), .refresh):
            refuse(context, BusError(.badFrame, "one LOGIN or REFRESH per connection, then HELLO"))
        case (.awaitingHello, .login(let login)):
            let (certificate, address) = (peerCertificate(context), context.channel.remoteAddress?.ipAddress ?? "")
            exchange(context) { [authenticator] () async throws(BusError) in
                try await authenticator.login(login, from: address, certificate: certificate)
            }
        case (.awaitingHello, .refresh(let refresh)):
            let certificate = peerCertificate(context)
            exchange(context) { [authenticator] () async throws(BusError) in
                try await authenticator.refresh(refresh, certificate: certificate)
            }
        case (.awaitingHello, _):
            refuse(context, BusError(.badFrame, "the first frame must be HELLO, LOGIN or REFRESH"))
        case (.checking(held: let held?), _):
            if let held = holding(frame, after: held, context) { state = .checking(held: held) }
        case (.opening(let session, let token, held: let held?), _):
            if let held = holding(frame, after: held, context) { state = .opening(session, token, held: held) }
        case (.checking, _), (.opening, _):
            refuse(context, BusError(.badFrame, "wait for the answer before sending \(frame.type)"))
        }
    }

    /// `held` and `frame`, a frame pipelined before WELCOME; nil when that is more than a client may
    /// send before WELCOME, and the connection is refused.
    private func holding(_ frame: Frame, after held: [Frame], _ context: ChannelHandlerContext) -> [Frame]? {
        guard held.count < Limits.maxFramesBeforeWelcome else {
            refuse(context, BusError(.badFrame, "more than \(Limits.maxFramesBeforeWelcome) frames before WELCOME"))
            return nil
        }
        return held + [frame]
    }

    /// LOGOUT: revokes the session's token and family, answers OK, ends the session.
    private func logout(_ command: RefOnly, _ context: ChannelHandlerContext) {
        guard case .active(let session, let token) = state else { return }
        session.assumeIsolated { $0.flush() }  // what the session wrote before goes first
        authenticator.logout(token)
        answer(.ok(Ok(ref: command.ref)), context)
        failed(BusError(.unauthenticated, "logged out"), context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .active(let session, _) = state { session.assumeIsolated { $0.flush() } }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Not run here: this can fire inside the session's own write (see AgentSession.scheduleDrain).
        if case .active(let session, _) = state, context.channel.isWritable { session.scheduleDrain() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        opened?.assumeIsolated { $0.channelClosed() }
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Decoding errors (oversized or malformed frames) end the connection with their code.
    private func failed(_ error: BusError, context: ChannelHandlerContext) {
        if case .active(let session, _) = state {
            session.assumeIsolated { $0.close(GoAway(code: error.code, message: error.message)) }
        } else {
            refuse(context, error)
        }
    }

    /// Runs `work` off the event loop (token checks and Argon2id take their time, and jwt-kit's key
    /// collection is an actor), then `then` back on it; a failure refuses the connection. The task
    /// is unstructured because a channel handler cannot await; it is short-lived and holds only
    /// this connection.
    /// - Parameter holding: keep the frames that arrive meanwhile for `then` (protocol 2's pipelining)
    ///   instead of refusing them; the connection is not read further until `then` runs.
    private func check<T: Sendable>(
        _ context: ChannelHandlerContext, holding: Bool = false,
        _ work: @escaping @Sendable () async throws(BusError) -> T,
        then: @escaping (SessionHandler, T, [Frame]) -> Void
    ) {
        state = .checking(held: holding ? [] : nil)
        if holding { reading(false, context) }
        let bound = NIOLoopBound((self, context, then), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        Task {
            let result: Result<T, BusError>
            do throws(BusError) {
                result = .success(try await work())
            } catch {
                result = .failure(error)
            }
            loop.execute {
                let (handler, context, then) = bound.value
                guard case .checking(let held) = handler.state else { return }
                switch result {
                case .success(let value): then(handler, value, held ?? [])
                case .failure(let error): handler.refuse(context, error)
                }
            }
        }
    }

    /// LOGIN or REFRESH: answers TOKENS, then waits for HELLO (or another exchange) again.
    private func exchange(
        _ context: ChannelHandlerContext, _ work: @escaping @Sendable () async throws(BusError) -> Tokens
    ) {
        check(context, work) { handler, tokens, _ in
            handler.state = .awaitingHello(exchanged: true)
            handler.answer(.tokens(tokens), context)
        }
    }

    /// Ends the session with GOAWAY `unauthenticated` once its access token has expired (with the
    /// leeway verification allows): a client that wants to go on comes back with a fresh token.
    private func endSession(_ context: ChannelHandlerContext, when token: TokenAuthority.Verified) {
        let left = token.expiresAt.timeIntervalSinceNow + authenticator.authority.settings.leeway
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(max(left, 0) * 1000))) {
            let (handler, context) = bound.value
            handler.failed(BusError(.unauthenticated, "the access token expired"), context: context)
        }
    }

    /// The client's verified certificate, under mTLS.
    private func peerCertificate(_ context: ChannelHandlerContext) -> PeerCertificate? {
        (try? context.pipeline.syncOperations.handler(type: TLSHandler.self))?.peerCertificate
    }

    /// Stops or resumes reading the connection (while a protocol 2 HELLO is checked, what follows it
    /// waits in the socket, not in memory).
    private func reading(_ on: Bool, _ context: ChannelHandlerContext) {
        try? context.channel.syncOptions?.setOption(.autoRead, value: on)
    }

    /// The session of an `opening` or `active` connection.
    private var opened: AgentSession? {
        switch state {
        case .opening(let session, _, _), .active(let session, _): session
        case .awaitingHello, .checking, .closed: nil
        }
    }

    /// Opens the session, then, once every node can find it (at once on a bus alone), welcomes the
    /// client.
    private func open(
        _ token: TokenAuthority.Verified, hello: Hello, held: [Frame], context: ChannelHandlerContext
    ) {
        timer?.cancel()
        var listed: (@Sendable () -> Void)?
        if supervisor.cluster != nil {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let loop = context.eventLoop
            listed = {
                loop.execute {
                    let (handler, context) = bound.value
                    handler.welcome(hello, context)
                }
            }
        }
        do throws(BusError) {
            let session = try supervisor.openSession(identity: token.identity, channel: context.channel, listed: listed)
            state = .opening(session, token, held: hello.version >= 2 ? held : nil)
            if listed == nil { welcome(hello, context) }
        } catch {
            refuse(context, error)
        }
    }

    /// Answers WELCOME to an `opening` connection, starts its session, then runs the frames
    /// pipelined behind a protocol 2 HELLO.
    private func welcome(_ hello: Hello, _ context: ChannelHandlerContext) {
        guard case .opening(let session, let token, let held) = state else { return }
        let identity = token.identity
        state = .active(session, token)
        endSession(context, when: token)
        let welcome = Welcome(
            sessionID: UInt64(session.number), tenant: identity.tenant,
            agentID: identity.agentID, limits: supervisor.configuration.limits)
        answer(.welcome(welcome), context)
        session.assumeIsolated { $0.start(protocolVersion: hello.version) }
        supervisor.logger.debug(
            "session opened",
            metadata: [
                "agent": "\(identity.key)", "client": "\(hello.clientName)", "session": "\(session.number)",
                "protocol": "\(hello.version)",
            ])
        for frame in held ?? [] { handle(frame, context: context) }
        session.assumeIsolated { $0.flush() }
        if hello.version >= 2 { reading(true, context) }
    }

    /// Answers the handshake with ERROR and closes (a session opened for it closes too).
    private func refuse(_ context: ChannelHandlerContext, _ error: BusError) {
        let session = opened
        state = .closed
        answer(.error(ErrorFrame(ref: 0, error: error)), context)
        context.close(promise: nil)
        session?.assumeIsolated { $0.channelClosed() }
    }

    /// Writes a handshake answer (the session writes everything after WELCOME).
    private func answer(_ frame: Frame, _ context: ChannelHandlerContext) {
        var bytes = context.channel.allocator.buffer(capacity: 256)
        frame.encode(into: &bytes)
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }
}
