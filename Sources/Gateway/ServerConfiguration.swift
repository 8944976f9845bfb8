public import ACBTLS
public import Actors
public import NIOCore

/// Settings of the agent listener and everything behind it.
public struct ServerConfiguration: Sendable {
    /// Address the agent listener binds to.
    public var host = "127.0.0.1"
    /// Port of the agent listener; 0 picks a free one.
    public var port = 7400
    /// HS256 secret that signs agent tokens. Required: there is no safe default.
    public var tokenSecret: String
    /// Issuer, audience and lifetimes of the tokens the bus issues and accepts.
    public var tokens = TokenAuthority.Settings()
    /// TLS for the agent port; nil serves plain TCP (development and benchmarks only).
    public var tls: TLSConfiguration?
    /// Open connections one source address may have; one more is closed at once.
    public var maxConnectionsPerAddress = 1024
    /// A connection that has not completed the TLS handshake and HELLO within this time is closed
    /// (no slowloris: the clock starts at accept).
    public var handshakeTimeout = TimeAmount.seconds(10)
    /// On shutdown, how long sessions may take to drain their deliveries before being closed.
    public var drainTimeout = TimeAmount.seconds(10)
    /// File that audit events are appended to as JSON lines (as well as the audit stream, with
    /// `kafkaBrokers`); with neither, they are logged at debug level.
    public var auditLogPath: String?
    /// PostgreSQL (libpq URI) for durable storage; nil keeps state in memory only.
    public var postgresURL: String?
    /// Redis (`redis://host:port`) for presence and idempotency keys; nil keeps them in memory only.
    public var redisURL: String?
    /// Kafka bootstrap servers for the audit stream; nil sends audit events to `auditLogPath`, else the log.
    public var kafkaBrokers: String?
    /// This node's cluster (docs/cluster.md), joined through `redisURL` and `kafkaBrokers`, and its
    /// node id (nil: one is made up at start); nil runs a single node.
    public var cluster: (name: String, nodeID: String?)?
    /// Where the spools of the sidecars (writes waiting for an unreachable sidecar, and the audit
    /// journal) are kept; they must survive a restart of the bus, so not a folder cleared at boot.
    public var spoolDirectory = "/var/tmp/acb-spool"
    /// Most bytes each spool may hold (PostgreSQL writes, Redis writes, the audit journal). When the
    /// PostgreSQL spool is full, durable sends are refused with `storage_unavailable`.
    public var spoolBytes = 1 << 30
    /// How long a stored message stays in PostgreSQL once acknowledged or dead-lettered, in ms
    /// (`GET /api/v1/messages/{id}` shows it meanwhile); 0 keeps them all.
    public var messageRetentionMs: UInt64 = 7 * 86_400_000
    /// The admin REST API (docs/admin-api.md); nil runs none.
    public var admin: AdminConfiguration?
    /// The supervisor tree's settings: limits, timeouts, queue bounds.
    public var supervisor = SupervisorConfiguration()

    public init(tokenSecret: String) {
        self.tokenSecret = tokenSecret
    }
}
