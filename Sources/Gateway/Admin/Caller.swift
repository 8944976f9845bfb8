import Actors
import Bus

/// Who made an admin request, proven by its bearer token, and what that lets them do
/// (docs/security.md): admins act on any tenant, observers read their own tenant, agents read
/// their tenant's directory and act only on themselves. Every 403 is audited as `security.denied`;
/// what the caller may not read is answered 404, unaudited (``mayRead(_:)``).
struct Caller: Sendable {
    let token: TokenAuthority.Verified
    let roles: [Role]
    let supervisor: Supervisor
    /// `METHOD /path` of the request, for the audit event of a denial.
    let operation: String

    init(_ token: TokenAuthority.Verified, operation: String, supervisor: Supervisor) {
        self.token = token
        self.roles = Role.parse(token.identity.roles)
        self.supervisor = supervisor
        self.operation = operation
    }

    var key: AgentKey { token.identity.key }
    var isAdmin: Bool { roles.contains(.admin) }
    /// Observers read everything of their tenant and change nothing.
    var readsTenant: Bool { isAdmin || roles.contains(.observer) }

    /// The tenant the request acts in: an admin's `tenant` parameter (their own by default); anyone
    /// else's own tenant, and naming another is denied.
    func tenant(_ asked: String?) throws(AdminError) -> String {
        guard let asked, asked != key.tenant else { return key.tenant }
        guard isAdmin else { throw deny("only admins act on another tenant") }
        return asked
    }

    /// Requires the admin role.
    func requireAdmin() throws(AdminError) {
        guard isAdmin else { throw deny("this needs the admin role") }
    }

    /// Requires the admin or observer role (the tenant itself is checked by ``tenant(_:)``).
    func requireTenantReader() throws(AdminError) {
        guard readsTenant else { throw deny("this needs the admin or observer role") }
    }

    /// Requires the right to change `agent` or act as it (register, unregister, disconnect, send):
    /// admins, and the agent itself unless it only observes.
    func requireManage(_ agent: AgentKey) throws(AdminError) {
        guard isAdmin || (agent == key && roles.contains(where: { $0 != .observer })) else {
            throw deny("agents act only on themselves")
        }
    }

    /// Requires the right to send as `agent`: its own right to change itself, with a role that
    /// may SEND on the wire.
    func requireSend(as agent: AgentKey) throws(AdminError) {
        try requireManage(agent)
        guard roles.contains(where: { $0.allows(.send) }) else { throw deny("this token's roles may not send") }
    }

    /// Requires the right to read what concerns `agents` (its messages, uploads, dead letters):
    /// admins, observers of the tenant, and the agents themselves.
    func requireRead(_ agents: AgentKey...) throws(AdminError) {
        guard mayRead(agents) else { throw deny("agents read only what concerns themselves") }
    }

    /// Whether the caller may read what concerns `agents`, as ``requireRead(_:)`` decides, unaudited.
    func mayRead(_ agents: AgentKey...) -> Bool { mayRead(agents) }

    private func mayRead(_ agents: [AgentKey]) -> Bool {
        readsTenant && agents.allSatisfy({ isAdmin || $0.tenant == key.tenant }) || agents.contains(key)
    }

    /// The refusal `message`, audited.
    func deny(_ message: String) -> AdminError {
        supervisor.record(
            "security.denied", tenant: key.tenant, agentID: key.agentID, ["operation": operation, "via": "admin-api"])
        return AdminError(.forbidden, message)
    }
}
