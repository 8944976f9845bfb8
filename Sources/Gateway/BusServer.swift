import ACBTLS
public import Actors
public import Bus
import Foundation
public import Logging
import NIOCore
import NIOPosix
public import Persistence
import Prometheus

/// Everything `acb serve` runs, assembled from one ``ServerConfiguration``: the sidecars' writers,
/// the supervisor tree and the agent listener, bound and ready for a `ServiceGroup`.
public struct BusServer: Sendable {
    public let supervisor: Supervisor
    public let listener: AgentListener
    public let authenticator: Authenticator
    public var authority: TokenAuthority { authenticator.authority }
    /// The agent port's certificates, when it speaks TLS; ``ServerCertificates/reload()`` on SIGHUP.
    public let certificates: ServerCertificates?
    /// The sidecars' writers, where configured (for health reports and tests).
    public let store: PostgresStore?
    public let shared: RedisState?
    public let auditStream: AuditStream?
    /// This node's link to the other nodes of its cluster, if it is in one.
    public let cluster: ClusterNode?
    /// The admin REST API, when configured; a service to run beside ``listener``.
    public let admin: AdminServer?
    /// The supervised children: the writers' threads and the registry restorer (/readyz, /metrics).
    public let children: [ChildStatus]

    /// Builds the supervisor and binds the agent port on NIO's shared event loops.
    ///
    /// A sidecar that cannot be reached is reported (degraded) and connected to when it appears;
    /// a database whose schema is behind this build stops the start.
    /// - Parameter audit: where audit events go; by default Kafka and the file of `auditLogPath` (each
    ///   when configured), else the log.
    public static func start(configuration: ServerConfiguration, logger: Logger, audit: (any AuditSink)? = nil)
        async throws -> BusServer
    {
        let spool = configuration.spoolDirectory
        let auditStream = try configuration.kafkaBrokers.map { brokers throws(SidecarError) in
            var settings = AuditStream.Settings(brokers: brokers, journalDirectory: "\(spool)/audit")
            settings.journalBytes = configuration.spoolBytes
            return try AuditStream(settings: settings, logger: logger)
        }
        // The audit log file, when audit events are not handed in.
        let auditLog =
            try audit == nil
            ? configuration.auditLogPath.map { path throws(BusError) in try AuditLogWriter(path: path, logger: logger) }
            : nil
        let sinks: [any AuditSink] = [
            auditStream.map { AuditStreamSink(stream: $0) as any AuditSink },
            auditLog.map { AuditLogSink(writer: $0) as any AuditSink },
        ].compactMap { $0 }
        let audit: any AuditSink =
            if let audit {
                audit
            } else if sinks.isEmpty {
                LogAuditSink(logger: logger)
            } else {
                sinks.count == 1 ? sinks[0] : AuditSinks(sinks)
            }
        // The start-up reads block in libpq and hiredis: on NIO's thread pool, not the cooperative one.
        let blocking = NIOThreadPool.singleton
        var snapshot: PostgresStore.Snapshot?
        var contexts: [ContextRecord]?
        if let url = configuration.postgresURL {
            do {
                snapshot = try await blocking.runIfActive { try PostgresStore.open(url: url) }
                contexts = try await blocking.runIfActive { try PostgresContextStore.load(url: url) }
            } catch let error as SidecarError where error.connectionLost {
                logger.warning(
                    "degraded: PostgreSQL unreachable at start; the registry and contexts are read once it is back (until then, the registry from its local snapshot, and contexts refuse with storage_unavailable)",
                    metadata: ["error": "\(error)"])
            }
        }
        // Events nobody records are not made (a durable message has two).
        let recorder: (@Sendable ([AuditEvent]) -> Void)?
        if audit.isRecording { recorder = { @Sendable events in audit.record(events) } } else { recorder = nil }
        let store = try configuration.postgresURL.map { url throws(SidecarError) in
            var settings = PostgresStore.Settings(url: url, spoolDirectory: "\(spool)/postgres")
            settings.spoolBytes = configuration.spoolBytes
            settings.retentionMs = configuration.messageRetentionMs
            settings.leaseMs =
                configuration.supervisor.ackTimeoutMs * UInt64(configuration.supervisor.maxDeliveryAttempts)
            return try PostgresStore(
                settings: settings, logger: logger, audit: recorder,
                auditIsFull: { auditStream?.isFull ?? false })
        }
        let shared = try configuration.redisURL.map { url throws(SidecarError) in
            var settings = RedisState.Settings(url: url, spoolDirectory: "\(spool)/redis")
            settings.spoolBytes = configuration.spoolBytes
            return try RedisState(settings: settings, logger: logger)
        }
        var cluster: ClusterNode?
        if let (name, nodeID) = configuration.cluster {
            guard let redisURL = configuration.redisURL, let brokers = configuration.kafkaBrokers,
                configuration.postgresURL != nil
            else {
                throw SidecarError(
                    message:
                        "a cluster node needs PostgreSQL, Redis and Kafka (--postgres-url, --redis-url, --kafka-brokers)",
                    connectionLost: false)
            }
            let settings = ClusterNode.Settings(
                cluster: name, nodeID: nodeID ?? ClusterNode.generatedNodeID(), redisURL: redisURL, brokers: brokers)
            cluster = try await blocking.runIfActive { try ClusterNode(settings: settings, logger: logger) }
        }
        let registry = PrometheusCollectorRegistry()
        var metrics = PrometheusMetricsFactory(registry: registry)
        // Requests relayed between agents take tens of microseconds to milliseconds.
        metrics.durationHistogramBuckets["acb_request_duration_seconds"] = [
            50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
        ].map { Duration.microseconds($0) }
        var supervision = configuration.supervisor
        if configuration.postgresURL != nil { supervision.registrySnapshotPath = "\(spool)/registry.json" }
        let contextStorage = configuration.postgresURL.map { PostgresContextStore(url: $0, logger: logger) }
        let supervisor = try Supervisor(
            configuration: supervision, audit: audit, store: store, shared: shared, contextStorage: contextStorage,
            keyStorage: configuration.postgresURL.map(PostgresKeyStore.init), cluster: cluster,
            metrics: BusMetrics(factory: metrics), logger: logger)
        var restorer: WorkerThread?
        if let snapshot, let contexts {
            supervisor.restore(agents: snapshot.agents, lastMessageID: snapshot.lastMessageID)
            supervisor.contexts.restore(contexts)
        } else if let url = configuration.postgresURL {
            do {
                let count = try await blocking.runIfActive { try supervisor.restoreSnapshot() }
                logger.info("registry read from its local snapshot", metadata: ["agents": "\(count)"])
            } catch {
                logger.error("cannot read the registry's local snapshot", metadata: ["error": "\(error)"])
            }
            restorer = restoreWhenReachable(url, after: store, into: supervisor, logger: logger)
        }
        if let url = configuration.redisURL {
            do {
                supervisor.restoreIdempotency(
                    try await blocking.runIfActive { try RedisState.idempotencyKeys(url: url) })
            } catch {
                logger.warning(
                    "degraded: Redis unreachable at start, idempotency keys start empty",
                    metadata: ["error": "\(error)"])
            }
        }
        supervisor.startHousekeeping(on: MultiThreadedEventLoopGroup.singleton.any())
        if cluster != nil {
            try await blocking.runIfActive { supervisor.joinCluster() }
            // Registrations and context versions other nodes made between the reads above and
            // joining (sent before this node read its topic, or before they knew it) are read now;
            // those made since arrive as records.
            if let url = configuration.postgresURL,
                let (agents, versions) = try? await blocking.runIfActive({
                    (try PostgresStore.open(url: url), try PostgresContextStore.load(url: url))
                })
            {
                supervisor.restore(agents: agents.agents, lastMessageID: agents.lastMessageID)
                supervisor.contexts.apply(versions)
            }
        }
        let authority = try await TokenAuthority(secret: configuration.tokenSecret, settings: configuration.tokens)
        let ledger = TokenLedger(shared: shared)
        if let url = configuration.redisURL {
            do {
                ledger.restore(try await blocking.runIfActive { try RedisState.tokenStates(url: url) })
            } catch {
                logger.warning(
                    "degraded: Redis unreachable at start; revocations and refresh families start empty",
                    metadata: ["error": "\(error)"])
            }
        }
        let authenticator = Authenticator(
            authority: authority, ledger: ledger, credentials: configuration.postgresURL.map(CredentialStore.init),
            supervisor: supervisor)
        let certificates = try configuration.tls.map { tls throws(TLSError) in try ServerCertificates(tls) }
        let listener = try await AgentListener.bind(
            configuration: configuration, supervisor: supervisor, authenticator: authenticator,
            certificates: certificates, group: MultiThreadedEventLoopGroup.singleton)
        let children =
            (store?.children ?? [])
            + [
                contextStorage?.child, shared?.child, auditStream?.child, auditLog?.child, restorer?.status,
            ].compactMap { $0 } + (cluster?.children ?? [])
        for child in children {
            // Escalation is audited once per run of failures (it is in the log and /readyz too).
            // Weakly: the supervisor holds the writers, whose statuses hold this closure.
            child.onEscalation { [weak supervisor] (failed: ChildStatus.Snapshot) in
                supervisor?.record(
                    "bus.child_failed", tenant: "", agentID: "",
                    ["child": failed.name, "restarts": "\(failed.restarts)", "error": failed.lastFailure ?? ""])
            }
        }
        let admin = try configuration.admin.map { settings in
            try AdminServer(
                configuration: settings,
                api: AdminAPI(
                    supervisor: supervisor, authenticator: authenticator,
                    records: configuration.postgresURL.map(AdminStore.init), redisURL: configuration.redisURL,
                    sidecars: .init(store: store, shared: shared, auditStream: auditStream), children: children,
                    requiresClientCertificates: configuration.tls?.clientAuthentication == .required),
                registry: registry, connections: { [listener] in listener.connections }, logger: logger)
        }
        if certificates == nil {
            logger.warning("TLS is off: agents connect over plain TCP")
        }
        if store == nil {
            logger.warning("no PostgreSQL configured: state, contexts included, is in memory and nothing is durable")
        }
        return BusServer(
            supervisor: supervisor, listener: listener, authenticator: authenticator, certificates: certificates,
            store: store, shared: shared, auditStream: auditStream, cluster: cluster, admin: admin, children: children)
    }

    /// Reads the store's snapshot on a supervised thread of its own, once a second until PostgreSQL
    /// answers and `store` has applied its spool (so unregistrations made meanwhile are in it), or
    /// until the bus shuts down; blocking libpq calls stay off the event loops and the cooperative pool.
    /// - Returns: the thread, whose status is the child `registry-restorer`.
    private static func restoreWhenReachable(
        _ url: String, after store: PostgresStore?, into supervisor: Supervisor, logger: Logger
    ) -> WorkerThread {
        let thread = WorkerThread(name: "registry-restorer")
        thread.start(logger: logger) {
            while !supervisor.isShuttingDown {
                thread.sleep(seconds: 1)
                try thread.checkpoint()
                guard store.map({ $0.isConnected && $0.spooledBytes == 0 }) ?? true,
                    let snapshot = try? PostgresStore.open(url: url),
                    let contexts = try? PostgresContextStore.load(url: url)
                else { continue }
                supervisor.restore(agents: snapshot.agents, lastMessageID: snapshot.lastMessageID)
                supervisor.contexts.restore(contexts)
                logger.info(
                    "registry and contexts read from PostgreSQL",
                    metadata: ["agents": "\(snapshot.agents.count)", "context_versions": "\(contexts.count)"])
                return
            }
        }
        return thread
    }

    /// The port agents connect to.
    public var port: Int { listener.localAddress.port ?? 0 }
}
