public import Bus
import NIOConcurrencyHelpers

/// The agents that registered, online or not, with what they said about themselves.
///
/// Lock-protected; every call is scoped to one tenant.
public final class Registry: Sendable {
    private struct Entry {
        var description: AgentDescription
        var online: Bool
    }

    private let entries = NIOLockedValueBox([AgentKey: Entry]())

    init() {}

    /// Records or replaces an agent's description; the agent is online.
    func register(_ key: AgentKey, _ description: AgentDescription) {
        entries.withLockedValue { $0[key] = Entry(description: description, online: true) }
    }

    /// Removes an agent. - Returns: whether it was registered.
    func unregister(_ key: AgentKey) -> Bool {
        entries.withLockedValue { $0.removeValue(forKey: key) != nil }
    }

    public func isRegistered(_ key: AgentKey) -> Bool {
        entries.withLockedValue { $0[key] != nil }
    }

    /// Marks a registered agent online or offline.
    func setOnline(_ key: AgentKey, _ online: Bool) {
        entries.withLockedValue { $0[key]?.online = online }
    }

    /// One page of the tenant's agents matching the filters, ordered by agent id.
    ///
    /// - Parameter live: the readiness and load of an online agent's session.
    /// - Returns: the page and the cursor of the next one (empty on the last).
    func discover(tenant: String, filter: Discover, live: (AgentKey) -> (Readiness, UInt32)?) -> ([AgentInfo], String) {
        let limit = filter.limit == 0 ? Limits.maxListCount : min(Int(filter.limit), Limits.maxListCount)
        let matching = entries.withLockedValue { entries in
            entries.filter { key, entry in
                key.tenant == tenant && key.agentID > filter.cursor
                    && (filter.agentType.isEmpty || entry.description.agentType == filter.agentType)
                    && (filter.capability.isEmpty || entry.description.capabilities.contains(filter.capability))
                    && (filter.status == .any || (filter.status == .online) == entry.online)
            }
        }
        let sorted = matching.sorted { $0.key.agentID < $1.key.agentID }
        let page = sorted.prefix(limit).map { key, entry in
            let (readiness, inFlight) = live(key) ?? (.busy, 0)
            return AgentInfo(agentID: key.agentID, description: entry.description,
                             status: entry.online ? .online : .offline, readiness: readiness, inFlight: inFlight)
        }
        return (page, sorted.count > limit ? page.last?.agentID ?? "" : "")
    }
}
