public import Bus
import NIOConcurrencyHelpers
import Synchronization

/// The agents that registered, online or not, with what they said about themselves.
///
/// Lock-protected; every call is scoped to one tenant.
///
/// It is *complete* once it holds every agent the durable store knows (at once without a store):
/// until then an agent it lacks may still exist, and is not reported unknown.
public final class Registry: Sendable {
    private struct State {
        var entries: [AgentKey: AgentDescription] = [:]
        /// Changes since start: a snapshot taken at one version need not be written again.
        var version: UInt64 = 0
        /// Entries from the local snapshot not registered again since: the store's word replaces them.
        var provisional: Set<AgentKey> = []
    }

    private let state = NIOLockedValueBox(State())
    private let complete: Synchronization.Atomic<Bool>

    init(complete: Bool) { self.complete = Atomic(complete) }

    /// Whether every registered agent is known (see the type's comment).
    public var isComplete: Bool { complete.load(ordering: .relaxed) }

    func markComplete() { complete.store(true, ordering: .relaxed) }

    /// Records or replaces an agent's description. - Returns: whether it was not registered before.
    @discardableResult
    func register(_ key: AgentKey, _ description: AgentDescription) -> Bool {
        state.withLockedValue { state in
            state.version += 1
            state.provisional.remove(key)
            return state.entries.updateValue(description, forKey: key) == nil
        }
    }

    /// Adds the entries of the local snapshot that are not registered, as provisional.
    func restoreProvisional(_ agents: [(AgentKey, AgentDescription)]) {
        state.withLockedValue { state in
            for (key, description) in agents where state.entries[key] == nil {
                state.entries[key] = description
                state.provisional.insert(key)
            }
            state.version += 1
        }
    }

    /// Takes the store's registry: it replaces every provisional entry (those the store lacks go),
    /// adds what is missing, and the registry is complete.
    /// - Returns: the agents whose description changed or went (nil), for the routing table.
    func restoreFromStore(_ agents: [(AgentKey, AgentDescription)]) -> [(AgentKey, AgentDescription?)] {
        let changed = state.withLockedValue { state in
            var changed: [(AgentKey, AgentDescription?)] = []
            var stored = Set<AgentKey>()
            for (key, description) in agents {
                stored.insert(key)
                guard state.entries[key] == nil || state.provisional.contains(key) else { continue }
                state.entries[key] = description
                changed.append((key, description))
            }
            for key in state.provisional.subtracting(stored) {
                state.entries[key] = nil
                changed.append((key, nil))
            }
            state.provisional.removeAll()
            state.version += 1
            return changed
        }
        markComplete()
        return changed
    }

    /// Removes an agent. - Returns: whether it was registered.
    func unregister(_ key: AgentKey) -> Bool {
        state.withLockedValue { state in
            guard state.entries.removeValue(forKey: key) != nil else { return false }
            state.provisional.remove(key)
            state.version += 1
            return true
        }
    }

    public func isRegistered(_ key: AgentKey) -> Bool {
        state.withLockedValue { $0.entries[key] != nil }
    }

    /// Changes since start (see ``snapshot()``).
    var version: UInt64 { state.withLockedValue { $0.version } }

    /// Every registered agent, and the version they are at.
    func snapshot() -> (agents: [AgentKey: AgentDescription], version: UInt64) {
        state.withLockedValue { ($0.entries, $0.version) }
    }

    /// The registered agent `key`, nil if it is not registered.
    /// - Parameter live: as for ``discover(tenant:filter:live:)``.
    func info(of key: AgentKey, live: (AgentKey) -> (Readiness, UInt32)?) -> AgentInfo? {
        state.withLockedValue { $0.entries[key] }.map { Self.info(key, $0, live(key)) }
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
        state.withLockedValue { state in
            guard let tenant else { return state.entries.count }
            return state.entries.keys.count { $0.tenant == tenant }
        }
    }

    /// One page of the tenant's agents matching the filters, ordered by agent id.
    ///
    /// - Parameter live: the readiness and load of the agent's live session; nil means offline.
    /// - Returns: the page and the cursor of the next one (empty on the last).
    func discover(tenant: String, filter: Discover, live: (AgentKey) -> (Readiness, UInt32)?) -> ([AgentInfo], String) {
        let limit = filter.limit == 0 ? Limits.maxListCount : min(Int(filter.limit), Limits.maxListCount)
        let matching = state.withLockedValue { state in
            state.entries.filter { key, description in
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
