/// Who asks for a context operation, and what the scope of a context lets them do.
///
/// Roles are checked first (docs/security.md); scope second: `private` lets the owner only,
/// `group` the owner and its members (`readers`), `shared` the owner and `writers` write and
/// `readers` read, `tenant` every agent of the tenant read and the owner and `writers` write.
/// Admins read and write every context of their tenant, observers read them.
public struct ContextPrincipal: Sendable, Hashable {
    public var tenant: String
    public var agentID: String
    /// Reads every context of the tenant (admin and observer roles).
    public var readsAll: Bool
    /// Writes every context of the tenant (admin role).
    public var writesAll: Bool

    public init(tenant: String, agentID: String, readsAll: Bool = false, writesAll: Bool = false) {
        self.tenant = tenant
        self.agentID = agentID
        self.readsAll = readsAll || writesAll
        self.writesAll = writesAll
    }

    /// The principal of `identity`, from its roles.
    public init(_ identity: Identity) {
        let roles = Role.parse(identity.roles)
        self.init(
            tenant: identity.tenant, agentID: identity.agentID, readsAll: roles.contains(.observer),
            writesAll: roles.contains(.admin))
    }

    /// What it may do beyond its own contexts, as one byte (a cluster record's `status`): 1 reads
    /// all, 2 writes all.
    public var rights: UInt8 { (readsAll ? 1 : 0) | (writesAll ? 2 : 0) }

    /// The principal `agentID` of `tenant` with ``rights``.
    public init(tenant: String, agentID: String, rights: UInt8) {
        self.init(tenant: tenant, agentID: agentID, readsAll: rights & 1 != 0, writesAll: rights & 2 != 0)
    }

    /// Whether this principal may read a context with `head`.
    public func mayRead(_ head: ContextHead) -> Bool {
        if readsAll || head.owner == agentID { return true }
        let attributes = head.attributes
        switch attributes.scope {
        case .private: return false
        case .group: return attributes.readers.contains(agentID)
        case .shared: return attributes.readers.contains(agentID) || attributes.writers.contains(agentID)
        case .tenant: return true
        }
    }

    /// Whether this principal may change the body, metadata, label or expiry of a context with `head`,
    /// or delete it.
    public func mayWrite(_ head: ContextHead) -> Bool {
        if writesAll || head.owner == agentID { return true }
        let attributes = head.attributes
        switch attributes.scope {
        case .private: return false
        case .group: return attributes.readers.contains(agentID)
        case .shared, .tenant: return attributes.writers.contains(agentID)
        }
    }

    /// Whether this principal may change who may read and write (scope, readers, writers).
    public func mayGrant(_ head: ContextHead) -> Bool { writesAll || head.owner == agentID }
}
