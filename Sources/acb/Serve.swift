import ACBTLS
import Actors
import ArgumentParser
import Bus
import Foundation
import Gateway
import Logging
import ServiceLifecycle
import UnixSignals

/// `acb serve`: runs the bus until SIGTERM or SIGINT, then drains and exits 0.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the bus.",
        discussion: """
            Every setting comes from its flag, else the environment variable ACB_<NAME> (e.g. \
            ACB_TOKEN_SECRET), else the --config JSON file (keys are the flag names), else its default.
            """
    )

    @Option(help: "JSON file with settings, keyed by flag name.") var config: String?
    @Option(help: "Address the agent listener binds to. Default 127.0.0.1.") var host: String?
    @Option(help: "Agent listener port (0 picks a free one). Default 7400.") var port: String?
    @Option(help: "HS256 secret that signs agent tokens. Required.") var tokenSecret: String?
    @Option(help: "How often agents must heartbeat, in ms. Default 5000.") var heartbeatIntervalMs: String?
    @Option(help: "Heartbeat intervals an agent may miss before it is offline. Default 3.") var missedHeartbeats:
        String?
    @Option(help: "Unacknowledged deliveries per session. Default 1024.") var maxUnacked: String?
    @Option(help: "Requests a session may have pending. Default 1024.") var maxPendingRequests: String?
    @Option(help: "Deliveries queued per session beyond the unacked window. Default 4096.") var mailboxCapacity: String?
    @Option(help: "Messages a protocol 2 sender may have in the bus, not yet taken by receivers. Default 1024.")
    var sendWindow: String?
    @Option(help: "Redeliver what is not acknowledged within this many ms. Default 30000.") var ackTimeoutMs: String?
    @Option(help: "Delivery attempts before dead-lettering. Default 5.") var maxDeliveryAttempts: String?
    @Option(help: "Disconnect a receiver whose queue stays full this long, in ms. Default 10000.") var slowConsumerMs:
        String?
    @Option(help: "Versions kept per context; a watch cannot resume before the oldest. Default 16.")
    var contextHistory: String?
    @Option(help: "Bytes the bus keeps for contexts (kept bodies); writes over it are refused. Default 536870912.")
    var contextBytes: String?
    @Option(help: "Context events a session holds undelivered before its watch ends. Default 4096.")
    var watchQueue: String?
    @Option(help: "Directory where stream uploads are spooled. Default /tmp/acb-streams.") var streamDir: String?
    @Option(
        help:
            "File that audit events are appended to as JSON lines, beside the Kafka audit stream if it is on. Default: none (with no Kafka, the log at debug level)."
    )
    var auditLog: String?
    @Option(
        help: "PostgreSQL URI for durable storage, e.g. postgresql://user@host:5432/acb. Default: none (in memory).")
    var postgresUrl: String?
    @Option(help: "Redis URL for presence and idempotency keys, e.g. redis://host:6379. Default: none.") var redisUrl:
        String?
    @Option(help: "Kafka bootstrap servers for the audit stream, host:port[,…]. Default: none (the log).")
    var kafkaBrokers: String?
    @Option(
        help:
            "Join the cluster of this name on the shared PostgreSQL, Redis and Kafka (docs/cluster.md). Default: none (one node)."
    )
    var cluster: String?
    @Option(help: "This node's id in its cluster, unique among the live nodes. Default: generated at start.")
    var nodeId: String?
    @Option(help: "Directory of the sidecars' spools and the audit journal. Default /var/tmp/acb-spool.")
    var spoolDir: String?
    @Option(help: "Most bytes each spool may hold on disk. Default 1073741824 (1 GiB).") var spoolBytes: String?
    @Option(
        help:
            "Hours a stored message stays in PostgreSQL once acknowledged or dead-lettered; 0 keeps them all. Default 168."
    )
    var messageRetentionHours: String?
    @Option(
        help:
            "Tenants whose messages are durable without asking, comma-separated, or * for all (needs --postgres-url). Default none."
    )
    var durableTenants: String?
    @Option(
        help:
            "Agents whose messages are durable without asking, as tenant/agent, comma-separated (needs --postgres-url). Default none."
    )
    var durableAgents: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error. Default info.") var logLevel: String?
    @Option(help: "PEM certificate chain of the agent port; with --tls-key, turns TLS on.") var tlsCert: String?
    @Option(help: "PEM private key of --tls-cert.") var tlsKey: String?
    @Option(help: "PEM CA certificates that client certificates must chain to (mTLS).") var tlsCa: String?
    @Option(help: "Client certificates: none, optional or required (needs --tls-ca). Default none.")
    var tlsClientAuth: String?
    @Option(help: "Oldest TLS version accepted: 1.3 or 1.2. Default 1.3.") var tlsMinVersion: String?
    @Option(help: "Open connections per source address. Default 1024.") var maxConnectionsPerAddress: String?
    @Option(help: "Commands per second per agent; 0 turns the limit off. Default 100000.") var rateLimit: String?
    @Option(help: "Commands an idle agent may send in one burst. Default 200000.") var rateBurst: String?
    @Option(help: "Address the admin REST API binds to. Default 127.0.0.1 (not exposed).") var adminHost: String?
    @Option(help: "Admin REST API port (0 picks a free one; off runs none). Default 7401.") var adminPort: String?
    @Option(help: "Origins browsers may call the admin API from (CORS), comma-separated, or *. Default none.")
    var adminCorsOrigins: String?
    @Option(help: "Admin API requests per second per source address. Default 200.") var adminRateLimit: String?
    @Option(help: "Admin API requests one address may make at once. Default 400.") var adminRateBurst: String?

    func run() async throws {
        let configuration: ServerConfiguration
        let level: Logger.Level
        do {
            (configuration, level) = try resolve()
        } catch let error as SettingError {
            throw error.exit()
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "acb")
        let server = try await BusServer.start(configuration: configuration, logger: logger)
        // The admin API first: a group stops its services last to first, so it still answers
        // (readyz says shutting_down) while the listener drains the sessions.
        var services: [any Service] = [server.admin as (any Service)?, server.listener].compactMap { $0 }
        if let certificates = server.certificates {
            services.append(CertificateReloader(certificates: certificates, logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    private func resolve() throws -> (ServerConfiguration, Logger.Level) {
        let settings = try Settings(configPath: config)
        guard let secret = settings.string("token-secret", flag: tokenSecret),
            secret.utf8.count >= TokenAuthority.minimumSecretBytes
        else {
            throw SettingError(
                "token-secret is required and must be at least \(TokenAuthority.minimumSecretBytes) bytes (flag, ACB_TOKEN_SECRET or config)"
            )
        }
        var configuration = ServerConfiguration(tokenSecret: secret)
        configuration.host = settings.string("host", flag: host) ?? configuration.host
        configuration.port = try settings.integer("port", flag: port, default: configuration.port, in: 0...65535)
        var supervisor = configuration.supervisor
        supervisor.limits.heartbeatIntervalMs = try settings.integer(
            "heartbeat-interval-ms", flag: heartbeatIntervalMs, default: supervisor.limits.heartbeatIntervalMs,
            in: 100...3_600_000)
        supervisor.missedHeartbeats = try settings.integer(
            "missed-heartbeats", flag: missedHeartbeats,
            default: supervisor.missedHeartbeats, in: 1...100)
        supervisor.limits.maxUnacked = try settings.integer(
            "max-unacked", flag: maxUnacked,
            default: supervisor.limits.maxUnacked, in: 1...1_000_000)
        supervisor.limits.maxPendingRequests = try settings.integer(
            "max-pending-requests", flag: maxPendingRequests, default: supervisor.limits.maxPendingRequests,
            in: 1...1_000_000)
        supervisor.mailboxCapacity = try settings.integer(
            "mailbox-capacity", flag: mailboxCapacity,
            default: supervisor.mailboxCapacity, in: 1...10_000_000)
        supervisor.sendWindow = try settings.integer(
            "send-window", flag: sendWindow, default: supervisor.sendWindow, in: 1...1_000_000)
        supervisor.ackTimeoutMs = try settings.integer(
            "ack-timeout-ms", flag: ackTimeoutMs,
            default: supervisor.ackTimeoutMs, in: 10...86_400_000)
        supervisor.maxDeliveryAttempts = try settings.integer(
            "max-delivery-attempts", flag: maxDeliveryAttempts,
            default: supervisor.maxDeliveryAttempts, in: 1...1000)
        supervisor.slowConsumerTimeoutMs = try settings.integer(
            "slow-consumer-ms", flag: slowConsumerMs,
            default: supervisor.slowConsumerTimeoutMs,
            in: 10...86_400_000)
        supervisor.rateLimitPerSecond = try settings.number(
            "rate-limit", flag: rateLimit, default: supervisor.rateLimitPerSecond, in: 0...1e9)
        supervisor.rateLimitBurst = try settings.integer(
            "rate-burst", flag: rateBurst, default: supervisor.rateLimitBurst, in: 1...UInt32.max)
        supervisor.contextHistory = try settings.integer(
            "context-history", flag: contextHistory, default: supervisor.contextHistory, in: 1...10_000)
        supervisor.contextBytes = try settings.integer(
            "context-bytes", flag: contextBytes, default: supervisor.contextBytes, in: 1 << 20...1 << 40)
        supervisor.watchQueueCapacity = try settings.integer(
            "watch-queue", flag: watchQueue, default: supervisor.watchQueueCapacity, in: 1...10_000_000)
        supervisor.streamDirectory = settings.string("stream-dir", flag: streamDir) ?? supervisor.streamDirectory
        supervisor.durableTenants = Set(settings.list("durable-tenants", flag: durableTenants))
        supervisor.durableAgents = Set(
            try settings.list("durable-agents", flag: durableAgents).map { entry throws(SettingError) in
                let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw SettingError("durable-agents takes tenant/agent entries, got '\(entry)'")
                }
                return AgentKey(tenant: String(parts[0]), agentID: String(parts[1]))
            })
        configuration.supervisor = supervisor
        configuration.auditLogPath = settings.string("audit-log", flag: auditLog)
        configuration.postgresURL = settings.string("postgres-url", flag: postgresUrl)
        for (name, set) in [
            ("durable-tenants", !supervisor.durableTenants.isEmpty),
            ("durable-agents", !supervisor.durableAgents.isEmpty),
        ]
        where set && configuration.postgresURL == nil {
            throw SettingError("\(name) needs postgres-url: durable messages are stored in PostgreSQL")
        }
        configuration.redisURL = settings.string("redis-url", flag: redisUrl)
        configuration.kafkaBrokers = settings.string("kafka-brokers", flag: kafkaBrokers)
        if let name = settings.string("cluster", flag: cluster) {
            guard configuration.postgresURL != nil, configuration.redisURL != nil, configuration.kafkaBrokers != nil
            else {
                throw SettingError("cluster needs postgres-url, redis-url and kafka-brokers: the nodes share them")
            }
            configuration.cluster = (name, settings.string("node-id", flag: nodeId))
        } else if settings.string("node-id", flag: nodeId) != nil {
            throw SettingError("node-id needs cluster")
        }
        configuration.spoolDirectory = settings.string("spool-dir", flag: spoolDir) ?? configuration.spoolDirectory
        configuration.messageRetentionMs =
            try settings.integer(
                "message-retention-hours", flag: messageRetentionHours, default: UInt64(168), in: 0...87_600)
            * 3_600_000
        configuration.spoolBytes = try settings.integer(
            "spool-bytes", flag: spoolBytes, default: configuration.spoolBytes, in: 4_096...(1 << 50))
        configuration.tls = try tlsConfiguration(settings)
        configuration.maxConnectionsPerAddress = try settings.integer(
            "max-connections-per-address", flag: maxConnectionsPerAddress,
            default: configuration.maxConnectionsPerAddress, in: 1...1_000_000)
        configuration.admin = try adminConfiguration(settings)
        let levelName = settings.string("log-level", flag: logLevel) ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw SettingError(
                "log-level must be one of trace, debug, info, notice, warning, error; got '\(levelName)'")
        }
        return (configuration, level)
    }

    /// The admin API's settings; nil with `admin-port off`.
    private func adminConfiguration(_ settings: Settings) throws -> AdminConfiguration? {
        guard settings.string("admin-port", flag: adminPort) != "off" else { return nil }
        var admin = AdminConfiguration()
        admin.host = settings.string("admin-host", flag: adminHost) ?? admin.host
        admin.port = try settings.integer("admin-port", flag: adminPort, default: admin.port, in: 0...65535)
        admin.corsOrigins = settings.list("admin-cors-origins", flag: adminCorsOrigins)
        admin.requestsPerSecond = try settings.number(
            "admin-rate-limit", flag: adminRateLimit, default: admin.requestsPerSecond, in: 0.001...1e9)
        admin.requestBurst = try settings.integer(
            "admin-rate-burst", flag: adminRateBurst, default: admin.requestBurst, in: 1...UInt32.max)
        return admin
    }

    /// TLS when a certificate and key are set, else nil (plain TCP).
    private func tlsConfiguration(_ settings: Settings) throws -> TLSConfiguration? {
        let certificate = settings.string("tls-cert", flag: tlsCert)
        let key = settings.string("tls-key", flag: tlsKey)
        guard certificate != nil || key != nil else { return nil }
        guard let certificate, let key else { throw SettingError("tls-cert and tls-key go together") }
        let tls = TLSConfiguration(
            certificateChain: certificate, privateKey: key, trustRoots: settings.string("tls-ca", flag: tlsCa),
            minimumVersion: try settings.choice("tls-min-version", flag: tlsMinVersion, default: .tls13),
            clientAuthentication: try settings.choice("tls-client-auth", flag: tlsClientAuth, default: .none))
        if tls.clientAuthentication != .none, tls.trustRoots == nil {
            throw SettingError("tls-client-auth \(tls.clientAuthentication.rawValue) needs tls-ca")
        }
        return tls
    }
}
