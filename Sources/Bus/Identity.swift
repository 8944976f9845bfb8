/// Who is on the other end of a session, taken from the verified token's claims.
public struct Identity: Sendable, Hashable {
    /// The tenant every lookup of this agent is scoped to.
    public var tenant: String
    /// The agent id, unique within the tenant.
    public var agentID: String
    /// Role names granted by the token.
    public var roles: [String]

    public init(tenant: String, agentID: String, roles: [String]) {
        self.tenant = tenant
        self.agentID = agentID
        self.roles = roles
    }

    /// The agent's address: tenant and id together.
    public var key: AgentKey { AgentKey(tenant: tenant, agentID: agentID) }
}

/// An agent's address. The tenant is part of it, so an agent of another tenant cannot be named.
public struct AgentKey: Sendable, Hashable, CustomStringConvertible {
    public var tenant: String
    public var agentID: String

    public init(tenant: String, agentID: String) {
        self.tenant = tenant
        self.agentID = agentID
    }

    public var description: String { "\(tenant)/\(agentID)" }
}

/// Validation of identifiers: agent ids, tenants, capabilities, types, stream ids, keys.
public enum Identifier {
    /// Checks that `value` is 1...128 UTF-8 bytes of printable ASCII other than space and `/`.
    ///
    /// - Throws: ``BusError`` with ``ErrorCode/invalidArgument`` naming `field`.
    public static func validate(_ value: String, field: String) throws(BusError) {
        let bytes = value.utf8
        guard !bytes.isEmpty, bytes.count <= Limits.maxIdentifierBytes else {
            throw BusError(.invalidArgument, "\(field) must be 1 to \(Limits.maxIdentifierBytes) bytes")
        }
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }) else {
            throw BusError(.invalidArgument, "\(field) may hold printable ASCII only, without space or '/'")
        }
    }
}
