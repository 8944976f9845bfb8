public import Actors
public import Logging
import NIOCore
import NIOPosix
import Persistence

/// Everything `acb serve` runs, assembled from one ``ServerConfiguration``: the supervisor tree
/// and the agent listener, bound and ready for a `ServiceGroup`.
public struct BusServer: Sendable {
    public let supervisor: Supervisor
    public let listener: AgentListener
    public let authority: TokenAuthority

    /// Builds the supervisor and binds the agent port on NIO's shared event loops.
    /// - Parameter audit: where audit events go; by default the file of `auditLogPath`, else the log.
    public static func start(configuration: ServerConfiguration, logger: Logger, audit: (any AuditSink)? = nil)
        async throws -> BusServer
    {
        let audit: any AuditSink =
            if let audit {
                audit
            } else if let path = configuration.auditLogPath {
                AuditLogSink(writer: try AuditLogWriter(path: path))
            } else {
                LogAuditSink(logger: logger)
            }
        let supervisor = try Supervisor(configuration: configuration.supervisor, audit: audit, logger: logger)
        supervisor.startHousekeeping(on: MultiThreadedEventLoopGroup.singleton.any())
        let authority = try await TokenAuthority(secret: configuration.tokenSecret)
        let listener = try await AgentListener.bind(
            configuration: configuration, supervisor: supervisor,
            authority: authority, group: MultiThreadedEventLoopGroup.singleton)
        logger.warning("no persistence backend configured: state is in memory and nothing is durable")
        return BusServer(supervisor: supervisor, listener: listener, authority: authority)
    }

    /// The port agents connect to.
    public var port: Int { listener.localAddress.port ?? 0 }
}
