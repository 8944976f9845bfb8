public import Bus
import NIOConcurrencyHelpers

/// The agents that registered, online or not, with what they said about themselves.
///
/// Lock-protected; every call is scoped to one tenant.
public final class Registry: Sendable {
    private let entries = NIOLockedValueBox([AgentKey: AgentDescription]())

    init() {}

    /// Records or replaces an agent's description. - Returns: whether it was not registered before.
    @discardableResult
    func register(_ key: AgentKey, _ description: AgentDescription) -> Bool {
        entries.withLockedValue { $0.updateValue(description, forKey: key) == nil }
    }

    /// Removes an agent. - Returns: whether it was registered.
    func unregister(_ key: AgentKey) -> Bool {
        entries.withLockedValue { $0.removeValue(forKey: key) != nil }
    }

    public func isRegistered(_ key: AgentKey) -> Bool {
        entries.withLockedValue { $0[key] != nil }
    }

    /// The registered agent `key`, nil if it is not registered.
    /// - Parameter live: as for ``discover(tenant:filter:live:)``.
    func info(of key: AgentKey, live: (AgentKey) -> (Readiness, UInt32)?) -> AgentInfo? {
        entries.withLockedValue { $0[key] }.map { Self.info(key, $0, live(key)) }
    }

    /// An agent as DISCOVER shows it; `session` is its live session's readiness and load, if any.
    private static func info(_ key: AgentKey, _ description: AgentDescription, _ session: (Readiness, UInt32)?)
        -> AgentInfo
    {
        AgentInfo(
            agentID: key.agentID, description: description, status: session == nil ? .offline : .online,
            readiness: session?.0 ?? .busy, inFlight: session?.1 ?? 0)
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
            let info = Self.info(key, description, live(key))
            guard filter.status == .any || info.status == filter.status else { continue }
            guard page.count < limit else {
                more = true
                break
            }
            page.append(info)
        }
        return (page, more ? page.last?.agentID ?? "" : "")
    }
}
