import Bus
public import Logging

/// One event of the audit stream. Every event carries its tenant.
public struct AuditEvent: Sendable, Equatable {
    /// What happened, e.g. `session.opened`, `message.dead_lettered`.
    public var kind: String
    public var tenant: String
    public var agentID: String
    /// Details: codes, counts, ids.
    public var detail: [String: String]

    public init(kind: String, tenant: String, agentID: String, detail: [String: String] = [:]) {
        self.kind = kind
        self.tenant = tenant
        self.agentID = agentID
        self.detail = detail
    }
}

/// Where audit events go. Implementations must not block: the hot path calls ``record(_:)``.
public protocol AuditSink: Sendable {
    func record(_ event: AuditEvent)
}

/// The audit sink of a bus with no audit stream configured: events go to the log at debug level.
public struct LogAuditSink: AuditSink {
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func record(_ event: AuditEvent) {
        logger.debug("audit \(event.kind)", metadata: [
            "tenant": "\(event.tenant)", "agent": "\(event.agentID)",
            "detail": .dictionary(event.detail.mapValues { .string($0) }),
        ])
    }
}
