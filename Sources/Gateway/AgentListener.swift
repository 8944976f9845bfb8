public import Actors
import Bus
import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle

/// The agent port: accepts connections, frames them and gives each an ``AgentSession``.
///
/// Bound by ``bind(configuration:supervisor:authenticator:certificates:group:)``, so callers know the port before
/// running it. ``run()`` serves until graceful shutdown, then stops accepting, sends every session
/// GOAWAY, lets them drain and returns.
public final class AgentListener: Service {
    public let supervisor: Supervisor
    /// The address actually bound (the port is real even when 0 was configured).
    public let localAddress: SocketAddress
    private let serverChannel: any Channel
    private let drainTimeout: TimeAmount
    private let limiter: ConnectionLimiter

    /// Connections open now, handshaking ones included.
    public var connections: Int { limiter.total }

    private init(
        supervisor: Supervisor, serverChannel: any Channel, drainTimeout: TimeAmount, limiter: ConnectionLimiter
    ) throws {
        self.supervisor = supervisor
        self.limiter = limiter
        self.serverChannel = serverChannel
        self.drainTimeout = drainTimeout
        guard let address = serverChannel.localAddress else {
            throw BusError(.internal, "the listener has no local address")
        }
        self.localAddress = address
    }

    /// Binds the agent port; with `certificates`, every connection starts with a TLS handshake.
    public static func bind(
        configuration: ServerConfiguration, supervisor: Supervisor, authenticator: Authenticator,
        certificates: ServerCertificates?, group: any EventLoopGroup
    ) async throws -> AgentListener {
        let maxFrame = configuration.supervisor.limits.maxFrameBytes
        let handshakeTimeout = configuration.handshakeTimeout
        let limiter = ConnectionLimiter(limit: configuration.maxConnectionsPerAddress)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 4 << 20))
            .childChannelInitializer { channel in
                let address = channel.remoteAddress?.ipAddress ?? "unknown"
                let (admitted, refusals) = limiter.admit(address)
                guard admitted else {
                    if let refusals {
                        supervisor.record(
                            "security.connection_refused", tenant: "", agentID: "",
                            [
                                "address": address, "refused": "\(refusals)",
                                "reason": "more than \(limiter.limit) connections from the address",
                            ])
                    }
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in limiter.release(address) }
                return channel.eventLoop.makeCompletedFuture {
                    let session = SessionHandler(
                        supervisor: supervisor, authenticator: authenticator, handshakeTimeout: handshakeTimeout,
                        maxFrameBytes: maxFrame)
                    // Stop reading while the socket cannot take our answers: a client that
                    // sends but never reads cannot make the server buffer without bound.
                    let handlers: [any ChannelHandler] =
                        if let certificates {
                            [try certificates.handler(), BackPressureHandler(), session]
                        } else {
                            [BackPressureHandler(), session]
                        }
                    try channel.pipeline.syncOperations.addHandlers(handlers)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        return try AgentListener(
            supervisor: supervisor, serverChannel: channel, drainTimeout: configuration.drainTimeout, limiter: limiter)
    }

    public func run() async throws {
        supervisor.logger.info("agents connect to \(localAddress)")
        try? await gracefulShutdown()
        supervisor.logger.info("shutting down: no new connections")
        try? await serverChannel.close()
        await supervisor.shutdown(drainTimeout: drainTimeout)
        supervisor.logger.info("shutdown complete")
    }
}
