public import ACBTLS
import Bus
import Gateway
import NIOCore

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
    /// The server's process, whose resident memory the harness samples; nil to not sample.
    public let pid: Int32?
    private let authority: TokenAuthority?
    /// For ``Kind/acbTLS``: the client side of TLS, trusting the server's CA.
    private let tls: TLSContext?

    /// - Parameters:
    ///   - tokenSecret: ACB only: the secret the bus checks agent tokens with.
    ///   - tls: ``Kind/acbTLS`` only: how agents check the server's certificate.
    public init(
        kind: Kind, host: String, port: Int, pid: Int32?, tokenSecret: String? = nil, tls: TLSContext? = nil
    ) async throws {
        self.kind = kind
        self.host = host
        self.port = port
        self.pid = pid
        self.tls = tls
        guard (kind == .acbTLS) == (tls != nil) else { throw WireError("TLS goes with acb-tls, and only with it") }
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
            try await Agent.connect(
                ACBWire.self, host: host, port: port, tls: tls, name: name, credential: credential,
                subscriptions: subscriptions, group: group, make: make)
        case .nats:
            try await Agent.connect(
                NATSWire.self, host: host, port: port, tls: nil, name: name, credential: credential,
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
