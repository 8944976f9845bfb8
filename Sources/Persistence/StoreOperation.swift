import Bus

/// One write of the ``PostgresStore``: what its queue holds and, while PostgreSQL is unreachable,
/// what its spool keeps (as JSON, one record each).
enum StoreOperation: Codable, Sendable {
    /// A message for an offline agent.
    case enqueue(StoredMessage)
    /// A stored message was acknowledged (`reason` nil) or dead-lettered (an error code name)
    /// after `attempts` attempts.
    case settle(id: UInt64, attempts: UInt16, reason: String?)
    /// Stored messages handed to a session that ended before they were settled: back in the backlog
    /// (status `queued`), for the agent's next read.
    case release(ids: [UInt64])
    /// A message that was never stored died; recorded in the dead-letter table.
    case deadLetter(StoredMessage, reason: String)
    /// An agent registered (`description` set) or unregistered.
    case saveAgent(tenant: String, agentID: String, description: AgentRecord?)

    /// Whether it must be applied after everything queued before it has committed: a release may
    /// name a message whose enqueue is in flight, and an agent's registrations must land in order.
    var needsOrder: Bool {
        switch self {
        case .release, .saveAgent: true
        case .enqueue, .settle, .deadLetter: false
        }
    }
}

/// What the store keeps of an agent's REGISTER.
struct AgentRecord: Codable, Sendable {
    var agentType: String
    var capabilities: [String]
    var location: String
    var metadata: [String: String]

    init(agentType: String, capabilities: [String], location: String, metadata: [String: String]) {
        self.agentType = agentType
        self.capabilities = capabilities
        self.location = location
        self.metadata = metadata
    }

    init(_ description: AgentDescription) {
        agentType = description.agentType
        capabilities = description.capabilities
        location = description.location
        metadata = Dictionary(description.metadata.map { ($0.key, $0.value) }) { _, last in last }
    }

    var description: AgentDescription {
        AgentDescription(
            agentType: agentType, capabilities: capabilities, location: location,
            metadata: metadata.sorted { $0.key < $1.key }.map { MetadataEntry(key: $0.key, value: $0.value) })
    }
}
