/// The SENDs by agent id a session is storing and has not heard back about, per receiving agent,
/// with the session of that agent whose backlog gate each holds (none when the agent was offline).
///
/// It keeps one sender's messages to an agent in order when the gate cannot: a message stored for
/// an agent that was offline holds no gate, and one that held a session that was since replaced
/// holds none of the new one's. Until such a store is answered, the sender's later messages to the
/// agent are stored too (``mustStore(to:receiver:)``); once it is answered, the message is stored
/// and the receiver's gate waits for it (``Supervisor/enqueueStored(_:holding:done:)``). Not
/// thread-safe: the sending session owns it.
struct StoresInFlight {
    /// Per agent id (the sender's tenant), how many stores by the gate each holds.
    private var byAgent: [String: [ObjectIdentifier?: Int]] = [:]

    /// Whether no store is in flight: the hot path checks this first.
    var isEmpty: Bool { byAgent.isEmpty }

    mutating func add(to agentID: String, holding gate: AgentSession?) {
        byAgent[agentID, default: [:]][gate.map(ObjectIdentifier.init), default: 0] += 1
    }

    /// A store was answered. The session it holds is retained by the store's completion until then,
    /// so its identifier is not reused meanwhile.
    mutating func remove(to agentID: String, holding gate: AgentSession?) {
        let key = gate.map(ObjectIdentifier.init)
        guard let count = byAgent[agentID]?[key] else { return }
        byAgent[agentID]?[key] = count > 1 ? count - 1 : nil
        if byAgent[agentID]?.isEmpty == true { byAgent[agentID] = nil }
    }

    /// Whether a store to `agentID` is in flight, by any gate or none.
    func isStoring(to agentID: String) -> Bool { byAgent[agentID] != nil }

    /// Whether a SEND to `agentID`, whose live session is `receiver`, must be stored behind a store
    /// of this sender that holds no gate of `receiver`.
    func mustStore(to agentID: String, receiver: AgentSession) -> Bool {
        guard let gates = byAgent[agentID] else { return false }
        let live = ObjectIdentifier(receiver)
        return gates.keys.contains { $0 != live }
    }
}
