public import NIOCore

/// What an agent tells the registry about itself, and what DISCOVER returns.
public struct AgentDescription: Sendable, Equatable {
    public var agentType: String
    public var capabilities: [String]
    public var location: String
    public var metadata: [MetadataEntry]

    public init(agentType: String, capabilities: [String], location: String = "", metadata: [MetadataEntry] = []) {
        self.agentType = agentType
        self.capabilities = capabilities
        self.location = location
        self.metadata = metadata
    }

    init(reading r: inout WireReader) throws(BusError) {
        self.init(
            agentType: try r.string("agent_type"),
            capabilities: try r.list("capabilities") { (r: inout WireReader) throws(BusError) in
                try r.string("capability")
            },
            location: try r.string("location"),
            metadata: try r.metadata())
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(agentType)
        b.writeWireList(capabilities) { $0.writeWireString($1) }
        b.writeWireString(location)
        b.writeWireMetadata(metadata)
    }
}

extension WireReader {
    /// A `list` of metadata entries, each a key `str` and a value `str`.
    mutating func metadata() throws(BusError) -> [MetadataEntry] {
        try list("metadata") { (r: inout WireReader) throws(BusError) in
            MetadataEntry(key: try r.string("metadata.key"), value: try r.string("metadata.value"))
        }
    }
}

extension ByteBuffer {
    /// Writes metadata entries as a `list` of key and value `str`s.
    mutating func writeWireMetadata(_ entries: [MetadataEntry]) {
        writeWireList(entries) {
            $0.writeWireString($1.key)
            $0.writeWireString($1.value)
        }
    }
}

/// One key/value pair of metadata (an agent's, a context's).
public struct MetadataEntry: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

/// REGISTER: publish this agent's description; the agent id comes from the token.
public struct Register: FrameBody {
    public var ref: UInt64
    public var description: AgentDescription

    public init(ref: UInt64, description: AgentDescription) {
        self.ref = ref
        self.description = description
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"), description: try AgentDescription(reading: &r))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        description.write(to: &b)
    }
}

/// A body that is only a command reference: UNREGISTER, LOGOUT, PING and PONG, and CONFIRM (protocol 2:
/// every SEND, BROADCAST and PUBLISH up to `ref` with no answer of its own succeeded).
public struct RefOnly: FrameBody {
    public var ref: UInt64
    public init(ref: UInt64) { self.ref = ref }
    public init(reading r: inout WireReader) throws(BusError) { self.init(ref: try r.u64("ref")) }
    public func write(to b: inout ByteBuffer) { b.writeInteger(ref) }
}

/// DISCOVER: find registered agents of the caller's tenant. Empty strings match anything.
public struct Discover: FrameBody {
    public var ref: UInt64
    public var agentType: String
    public var capability: String
    public var status: AgentStatus
    /// Opaque: empty for the first page, then the `nextCursor` of the previous page.
    public var cursor: String
    /// Page size, 1...``Limits/maxListCount``; 0 means the maximum.
    public var limit: UInt16

    public init(
        ref: UInt64, agentType: String = "", capability: String = "", status: AgentStatus = .any,
        cursor: String = "", limit: UInt16 = 0
    ) {
        self.ref = ref
        self.agentType = agentType
        self.capability = capability
        self.status = status
        self.cursor = cursor
        self.limit = limit
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let type = try r.string("agent_type")
        let capability = try r.string("capability")
        let raw = try r.u8("status")
        guard let status = AgentStatus(rawValue: raw) else { throw BusError(.badFrame, "unknown status \(raw)") }
        self.init(
            ref: ref, agentType: type, capability: capability, status: status,
            cursor: try r.string("cursor"), limit: try r.u16("limit"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(agentType)
        b.writeWireString(capability)
        b.writeInteger(status.rawValue)
        b.writeWireString(cursor)
        b.writeInteger(limit)
    }
}

/// One agent in a DISCOVERED page.
public struct AgentInfo: Sendable, Equatable {
    public var agentID: String
    public var description: AgentDescription
    public var status: AgentStatus
    public var readiness: Readiness
    /// Deliveries written to the agent and not yet acknowledged.
    public var inFlight: UInt32

    public init(
        agentID: String, description: AgentDescription, status: AgentStatus, readiness: Readiness,
        inFlight: UInt32
    ) {
        self.agentID = agentID
        self.description = description
        self.status = status
        self.readiness = readiness
        self.inFlight = inFlight
    }
}

/// DISCOVERED: one page of DISCOVER results, ordered by agent id; `nextCursor` empty on the last page.
public struct Discovered: FrameBody {
    public var ref: UInt64
    public var agents: [AgentInfo]
    public var nextCursor: String

    public init(ref: UInt64, agents: [AgentInfo], nextCursor: String) {
        self.ref = ref
        self.agents = agents
        self.nextCursor = nextCursor
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let agents = try r.list("agents") { (r: inout WireReader) throws(BusError) -> AgentInfo in
            let id = try r.string("agent_id")
            let description = try AgentDescription(reading: &r)
            let status = AgentStatus(rawValue: try r.u8("status")) ?? .offline
            let readiness = Readiness(rawValue: try r.u8("readiness")) ?? .busy
            return AgentInfo(
                agentID: id, description: description, status: status, readiness: readiness,
                inFlight: try r.u32("in_flight"))
        }
        self.init(ref: ref, agents: agents, nextCursor: try r.string("next_cursor"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireList(agents) { b, agent in
            b.writeWireString(agent.agentID)
            agent.description.write(to: &b)
            b.writeInteger(agent.status.rawValue)
            b.writeInteger(agent.readiness.rawValue)
            b.writeInteger(agent.inFlight)
        }
        b.writeWireString(nextCursor)
    }
}

/// HEARTBEAT: the agent is alive, and its readiness. Sent every `heartbeat_interval_ms`, or whenever
/// readiness changes. The server answers nothing.
public struct Heartbeat: FrameBody {
    public var readiness: Readiness

    public init(readiness: Readiness) { self.readiness = readiness }

    public init(reading r: inout WireReader) throws(BusError) {
        let raw = try r.u8("readiness")
        guard let readiness = Readiness(rawValue: raw) else { throw BusError(.badFrame, "unknown readiness \(raw)") }
        self.init(readiness: readiness)
    }

    public func write(to b: inout ByteBuffer) { b.writeInteger(readiness.rawValue) }
}
