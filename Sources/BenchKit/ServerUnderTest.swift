public import ACBTLS
import Bus
import Gateway
import NIOCore
import Synchronization

/// A server the harness measures, and how its agents connect to it.
public struct ServerUnderTest: Sendable {
    /// Which server it is.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case acb, nats
        /// ACB with TLS on its agent port: the same server, to measure what TLS costs.
        case acbTLS = "acb-tls"

        /// Whether the server is ACB (with or without TLS).
        public var isACB: Bool { self != .nats }
    }

    public let kind: Kind
    public let host: String
    public let port: Int
    /// ACB only: further nodes of the same cluster (docs/cluster.md); agents connect to `host`:`port`
    /// and these in turn, one after the other, so that consecutive agents (a producer and its consumer,
    /// a requester and its responder) are on different nodes.
    public let otherNodes: [(host: String, port: Int)]
    private let connections = ConnectionCount()
    /// The server's process, whose resident memory the harness samples; nil to not sample.
    public let pid: Int32?
    /// ACB only: the wire protocol version its agents speak, 1 or 2 (older revisions speak only 1).
    public let acbProtocol: UInt16
    private let authority: TokenAuthority?
    /// For ``Kind/acbTLS``: the client side of TLS, trusting the server's CA.
    private let tls: TLSContext?

    /// - Parameters:
    ///   - tokenSecret: ACB only: the secret the bus checks agent tokens with.
    ///   - tls: ``Kind/acbTLS`` only: how agents check the server's certificate.
    ///   - acbProtocol: ACB only: the wire protocol version, 1 or 2.
    public init(
        kind: Kind, host: String, port: Int, otherNodes: [(host: String, port: Int)] = [], pid: Int32?,
        tokenSecret: String? = nil, tls: TLSContext? = nil, acbProtocol: UInt16 = 2
    ) async throws {
        self.kind = kind
        self.host = host
        self.port = port
        self.otherNodes = otherNodes
        self.pid = pid
        self.tls = tls
        self.acbProtocol = acbProtocol
        guard (kind == .acbTLS) == (tls != nil) else { throw WireError("TLS goes with acb-tls, and only with it") }
        guard acbProtocol == 1 || acbProtocol == 2 else { throw WireError("ACB's wire protocol is version 1 or 2") }
        if kind.isACB {
            guard let tokenSecret else { throw WireError("ACB needs the token secret to sign agent tokens") }
            authority = try await TokenAuthority(secret: tokenSecret)
        } else {
            authority = nil
        }
    }

    /// What agent `name` of `tenant` presents: an ACB token, nothing for NATS.
    func credential(name: String, tenant: String) async throws -> String {
        guard let authority else { return "" }
        return try await authority.issue(
            Identity(tenant: tenant, agentID: name, roles: [Role.agentFull.rawValue]), ttl: 3_600)
    }

    /// Connects agent `name` with a behaviour made on its event loop.
    func connect<B: Behaviour>(
        name: String, credential: String, subscriptions: [String] = [], group: any EventLoopGroup,
        make: @escaping @Sendable () -> B
    ) async throws -> Agent<B> {
        switch kind {
        case .acb, .acbTLS:
            let version = acbProtocol
            let nodes = [(host, port)] + otherNodes
            let (host, port) = nodes[connections.next() % nodes.count]
            return try await Agent.connect(
                wire: { ACBWire(name: name, credential: credential, version: version) }, host: host, port: port,
                tls: tls, subscriptions: subscriptions, group: group, make: make)
        case .nats:
            return try await Agent.connect(
                wire: { NATSWire(name: name, credential: credential) }, host: host, port: port, tls: nil,
                subscriptions: subscriptions, group: group, make: make)
        }
    }

    /// Mints the credential, then connects.
    func connect<B: Behaviour>(
        name: String, tenant: String, subscriptions: [String] = [], group: any EventLoopGroup,
        make: @escaping @Sendable () -> B
    ) async throws -> Agent<B> {
        try await connect(
            name: name, credential: try await credential(name: name, tenant: tenant),
            subscriptions: subscriptions, group: group, make: make)
    }
}

/// How many agents connected so far, for spreading them over the nodes.
private final class ConnectionCount: Sendable {
    private let count = Atomic<Int>(0)

    func next() -> Int { count.wrappingAdd(1, ordering: .relaxed).oldValue }
}
