/// One version of a context as storage keeps it: its tenant, head and body.
public struct ContextRecord: Sendable, Equatable {
    public var tenant: String
    public var head: ContextHead
    /// Empty for a tombstone (a deleted or expired version).
    public var body: [UInt8]

    public init(tenant: String, head: ContextHead, body: [UInt8]) {
        self.tenant = tenant
        self.head = head
        self.body = body
    }
}

/// What became of records handed to context storage, reported in the order they were submitted.
public enum ContextStorageOutcome: Sendable {
    /// Committed, in one transaction.
    case committed([ContextRecord])
    /// Not committed (the database failed or went away); they may or may not have been written.
    case failed([ContextRecord], BusError)
}
