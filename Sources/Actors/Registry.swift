public import Bus
import NIOConcurrencyHelpers

/// The agents that registered, online or not, with what they said about themselves.
///
/// Lock-protected; every call is scoped to one tenant.
public final class Registry: Sendable {
    private let entries = NIOLockedValueBox([AgentKey: AgentDescription]())

    init() {}

    /// Records or replaces an agent's description.
    func register(_ key: AgentKey, _ description: AgentDescription) {
        entries.withLockedValue { $0[key] = description }
    }

    /// Removes an agent. - Returns: whether it was registered.
    func unregister(_ key: AgentKey) -> Bool {
        entries.withLockedValue { $0.removeValue(forKey: key) != nil }
    }

    public func isRegistered(_ key: AgentKey) -> Bool {
        entries.withLockedValue { $0[key] != nil }
    }

    /// What `key` said about itself, nil if it is not registered.
    func description(of key: AgentKey) -> AgentDescription? {
        entries.withLockedValue { $0[key] }
    }

    /// Agents registered in `tenant`, or in every tenant when nil.
    func count(of tenant: String?) -> Int {
        entries.withLockedValue { entries in
            guard let tenant else { return entries.count }
            return entries.keys.count { $0.tenant == tenant }
        }
    }

    /// One page of the tenant's agents matching the filters, ordered by agent id.
    ///
    /// - Parameter live: the readiness and load of the agent's live session; nil means offline.
    /// - Returns: the page and the cursor of the next one (empty on the last).
    func discover(tenant: String, filter: Discover, live: (AgentKey) -> (Readiness, UInt32)?) -> ([AgentInfo], String) {
        let limit = filter.limit == 0 ? Limits.maxListCount : min(Int(filter.limit), Limits.maxListCount)
        let matching = entries.withLockedValue { entries in
            entries.filter { key, description in
                key.tenant == tenant && key.agentID > filter.cursor
                    && (filter.agentType.isEmpty || description.agentType == filter.agentType)
                    && (filter.capability.isEmpty || description.capabilities.contains(filter.capability))
            }
        }
        // Sorted first, so live sessions (behind the routing table's lock) are looked up for one page only.
        var page: [AgentInfo] = []
        var more = false
        for (key, description) in matching.sorted(by: { $0.key.agentID < $1.key.agentID }) {
            let session = live(key)
            let status: AgentStatus = session == nil ? .offline : .online
            guard filter.status == .any || status == filter.status else { continue }
            guard page.count < limit else {
                more = true
                break
            }
            page.append(
                AgentInfo(
                    agentID: key.agentID, description: description, status: status,
                    readiness: session?.0 ?? .busy, inFlight: session?.1 ?? 0))
        }
        return (page, more ? page.last?.agentID ?? "" : "")
    }
}
