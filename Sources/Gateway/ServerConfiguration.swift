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
    /// A connection that has not completed HELLO within this time is closed.
    public var handshakeTimeout = TimeAmount.seconds(10)
    /// On shutdown, how long sessions may take to drain their deliveries before being closed.
    public var drainTimeout = TimeAmount.seconds(10)
    /// File that audit events are appended to as JSON lines; nil logs them at debug level instead.
    public var auditLogPath: String?
    /// The supervisor tree's settings: limits, timeouts, queue bounds.
    public var supervisor = SupervisorConfiguration()

    public init(tokenSecret: String) {
        self.tokenSecret = tokenSecret
    }
}
