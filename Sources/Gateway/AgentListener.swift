public import Actors
import Bus
import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle

/// The agent port: accepts connections, frames them and gives each an ``AgentSession``.
///
/// Bound by ``bind(configuration:supervisor:authority:group:)``, so callers know the port before
/// running it. ``run()`` serves until graceful shutdown, then stops accepting, sends every session
/// GOAWAY, lets them drain and returns.
public final class AgentListener: Service {
    public let supervisor: Supervisor
    /// The address actually bound (the port is real even when 0 was configured).
    public let localAddress: SocketAddress
    private let serverChannel: any Channel
    private let drainTimeout: TimeAmount

    private init(supervisor: Supervisor, serverChannel: any Channel, drainTimeout: TimeAmount) throws {
        self.supervisor = supervisor
        self.serverChannel = serverChannel
        self.drainTimeout = drainTimeout
        guard let address = serverChannel.localAddress else {
            throw BusError(.internal, "the listener has no local address")
        }
        self.localAddress = address
    }

    /// Binds the agent port.
    public static func bind(
        configuration: ServerConfiguration, supervisor: Supervisor, authority: TokenAuthority,
        group: any EventLoopGroup
    ) async throws -> AgentListener {
        let maxFrame = configuration.supervisor.limits.maxFrameBytes
        let handshakeTimeout = configuration.handshakeTimeout
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 4 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        // Stop reading while the socket cannot take our answers: a client that
                        // sends but never reads cannot make the server buffer without bound.
                        BackPressureHandler(),
                        SessionHandler(
                            supervisor: supervisor, authority: authority, handshakeTimeout: handshakeTimeout,
                            maxFrameBytes: maxFrame),
                    ])
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        return try AgentListener(
            supervisor: supervisor, serverChannel: channel, drainTimeout: configuration.drainTimeout)
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
