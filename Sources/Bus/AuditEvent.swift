/// One event of the audit stream: a security, message, registry or stream lifecycle event.
/// Every event carries its tenant.
public struct AuditEvent: Sendable, Equatable {
    /// What happened, e.g. `session.opened`, `message.dead_lettered`.
    public var kind: String
    public var tenant: String
    public var agentID: String
    /// Unix milliseconds.
    public var at: UInt64
    /// Details: codes, counts, ids.
    public var detail: [String: String]

    public init(kind: String, tenant: String, agentID: String, at: UInt64, detail: [String: String] = [:]) {
        self.kind = kind
        self.tenant = tenant
        self.agentID = agentID
        self.at = at
        self.detail = detail
    }
}
