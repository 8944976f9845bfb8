public import ACBTLS
public import Bus

/// How an ``ACBClient`` connects and behaves. Every default is safe.
public struct ClientConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The bearer token presented in HELLO (unused when ``credentials`` are set).
    public var token: String
    /// An agent's tenant, id and secret (from `acb agent create`): the client trades them for tokens with LOGIN,
    /// and after a disconnect refreshes them with REFRESH before it says HELLO again.
    public var credentials: Login?
    /// A name for logs on the server.
    public var clientName: String
    /// TLS for the connection, made once with ``TLSContext/client(_:)`` (it holds the trusted CAs
    /// and, for mTLS, the client certificate); nil connects over plain TCP.
    public var tls: TLSContext?
    /// The name the server's certificate must carry; the host when nil.
    public var serverName: String?
    /// Further nodes of the bus's cluster (docs/cluster.md): after a disconnect, or when a connect
    /// fails, the client tries the next address in turn (``host``:``port`` first, then these).
    public var otherNodes: [NodeAddress] = []
    /// Reconnect after an unexpected disconnect (never after being replaced by another connection).
    public var reconnect = true
    /// First reconnect delay, doubled after each failure up to ``maxBackoffMs``.
    public var initialBackoffMs: UInt64 = 100
    public var maxBackoffMs: UInt64 = 5_000
    /// Timeout of a request that names none, in milliseconds.
    public var defaultRequestTimeoutMs: UInt64 = 30_000
    /// Chunks of an upload in flight before waiting for the server's STREAM_STATUS.
    public var uploadWindow: UInt32 = 4
    /// Where downloaded streams are written.
    public var downloadDirectory = "/tmp"
    /// Called as a download advances: stream id, bytes received, total.
    public var downloadProgress: (@Sendable (String, UInt64, UInt64) -> Void)?
    /// This agent's keys for end-to-end encryption (``AgentKeys/file(_:)`` or your own): the client
    /// publishes them on each connect, opens what was sealed to them, and may seal (the `sealed:`
    /// options). Nil: no encryption, and sealed deliveries are handed out as they came.
    public var keys: AgentKeys?
    /// Where the keys pinned for other agents are kept between runs (a JSON file, mode 0600); nil
    /// keeps them in memory, so each run trusts the keys it first sees again.
    public var pinFile: String?
    /// How long a pinned key is used before the bus is asked again whether it was rotated or revoked.
    public var keyCheckIntervalMs: UInt64 = 60_000
    /// Refuse plaintext deliveries (``SealError/Code/notSealed``): the bus could forge those.
    public var requireSealed = false

    /// Every address the client may connect to: ``host``:``port``, then ``otherNodes``.
    var addresses: [NodeAddress] { [NodeAddress(host: host, port: port)] + otherNodes }

    public init(host: String = "127.0.0.1", port: Int = 7400, token: String, clientName: String = "acb-swift") {
        self.host = host
        self.port = port
        self.token = token
        self.clientName = clientName
    }

    /// A client that logs in with an agent's secret instead of presenting a token.
    public init(
        host: String = "127.0.0.1", port: Int = 7400, credentials: Login, clientName: String = "acb-swift"
    ) {
        self.init(host: host, port: port, token: "", clientName: clientName)
        self.credentials = credentials
    }
}

/// Where one node of a bus listens for agents.
public struct NodeAddress: Sendable, Hashable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}
