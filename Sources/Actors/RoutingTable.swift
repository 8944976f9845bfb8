public import Bus
import NIOConcurrencyHelpers
import Synchronization

/// Who is online and who listens to what, per tenant: read by every session on the hot path
/// under one short lock, never through an actor hop.
///
/// Every lookup takes the caller's tenant, so an agent of another tenant cannot be found.
public final class RoutingTable: Sendable {
    private struct State {
        var byNumber: [UInt32: AgentSession] = [:]
        var byAgent: [AgentKey: AgentSession] = [:]
        var members: [String: Set<UInt32>] = [:]
        var capabilities: [String: [String: Set<String>]] = [:]
        var topics: [String: SubscriptionIndex<UInt32>] = [:]
        /// Deliveries of agents whose session closed before they were acknowledged, kept for the
        /// agent's next session: at most `orphanCapacity` per agent, for at most `orphanTTLMs`.
        var orphans: [AgentKey: (envelopes: [Envelope], since: UInt64)] = [:]
    }

    private let state = NIOLockedValueBox(State())
    /// Counts the changes to who is live and who subscribes to what, made under the lock: a
    /// fan-out's receivers looked up at one count are still its receivers while it stays the same.
    private let changes = Atomic<UInt64>(0)
    /// Most orphaned deliveries kept per agent; older ones are returned for dead-lettering.
    private let orphanCapacity: Int
    /// How long orphaned deliveries wait for their agent before they are dead-lettered.
    private let orphanTTLMs: UInt64

    init(orphanCapacity: Int, orphanTTLMs: UInt64) {
        self.orphanCapacity = orphanCapacity
        self.orphanTTLMs = orphanTTLMs
    }

    /// Makes `session` the live session of its agent.
    /// - Returns: the session it replaced, which the caller closes, and the agent's orphaned deliveries.
    func attach(_ session: AgentSession) -> (replaced: AgentSession?, orphans: [Envelope]) {
        state.withLockedValue { state in
            let key = session.identity.key
            let replaced = state.byAgent.updateValue(session, forKey: key)
            state.byNumber[session.number] = session
            state.members[key.tenant, default: []].insert(session.number)
            countChange()
            return (replaced, state.orphans.removeValue(forKey: key)?.envelopes ?? [])
        }
    }

    /// Takes the deliveries kept for `key`'s next session (it opened one on another node).
    func takeOrphans(of key: AgentKey) -> [Envelope] {
        state.withLockedValue { $0.orphans.removeValue(forKey: key)?.envelopes ?? [] }
    }

    /// Forgets `session` and its subscriptions. Its unacknowledged deliveries go to the agent's
    /// newer session if one took over, else they wait for the next one. Orphans over the per-agent
    /// bound (oldest first) are returned, with their agent, for dead-lettering.
    func detach(_ session: AgentSession, patterns: [[Substring]], orphans: [Envelope], now: UInt64)
        -> [(AgentKey, Envelope)]
    {
        let key = session.identity.key
        return state.withLockedValue { state in
            state.byNumber[session.number] = nil
            state.members[key.tenant]?.remove(session.number)
            for pattern in patterns { state.topics[key.tenant]?.remove(pattern, session.number) }
            countChange()
            if state.byAgent[key] === session { state.byAgent[key] = nil }
            if let successor = state.byAgent[key], successor.requeue(orphans) { return [] }
            guard !orphans.isEmpty else { return [] }
            var kept = (state.orphans[key]?.envelopes ?? []) + orphans
            let overflow = max(0, kept.count - orphanCapacity)
            let dropped = kept.prefix(overflow).map { (key, $0) }
            kept.removeFirst(overflow)
            state.orphans[key] = (kept, state.orphans[key]?.since ?? now)
            return dropped
        }
    }

    /// Removes the orphans that waited longer than `orphanTTLMs` and returns them, with their agent,
    /// for dead-lettering.
    func expireOrphans(now: UInt64) -> [(AgentKey, Envelope)] {
        state.withLockedValue { state in
            var expired: [(AgentKey, Envelope)] = []
            for (agent, held) in state.orphans where held.since + orphanTTLMs <= now {
                expired += held.envelopes.map { (agent, $0) }
                state.orphans[agent] = nil
            }
            return expired
        }
    }

    public func session(number: UInt32) -> AgentSession? {
        state.withLockedValue { $0.byNumber[number] }
    }

    public func session(for key: AgentKey) -> AgentSession? {
        state.withLockedValue { $0.byAgent[key] }
    }

    /// Every live session of `tenant`, and the change count they were read at.
    func members(of tenant: String) -> (sessions: [AgentSession], at: UInt64) {
        state.withLockedValue { state in
            ((state.members[tenant] ?? []).compactMap { state.byNumber[$0] }, changes.load(ordering: .relaxed))
        }
    }

    /// Whether sessions or subscriptions changed since the count `at`.
    func changed(since at: UInt64) -> Bool { changes.load(ordering: .acquiring) != at }

    /// Called under the lock for every change of `byNumber` or `topics`.
    private func countChange() { changes.add(1, ordering: .releasing) }

    /// Records the capabilities an agent registered (replacing earlier ones).
    func setCapabilities(_ capabilities: [String], for key: AgentKey) {
        state.withLockedValue { state in
            var table = state.capabilities[key.tenant, default: [:]]
            for (name, agents) in table where agents.contains(key.agentID) {
                table[name] = agents.subtracting([key.agentID])
            }
            for name in capabilities { table[name, default: []].insert(key.agentID) }
            state.capabilities[key.tenant] = table.filter { !$0.value.isEmpty }
        }
    }

    /// The agents of `tenant` registered with `capability`, live here or not.
    func capable(tenant: String, capability: String) -> Set<String> {
        state.withLockedValue { $0.capabilities[tenant]?[capability] ?? [] }
    }

    /// This node's live agents that offer a capability, ready (with their deliveries in flight) or
    /// not: what a node of a cluster reports to the others for capability routing.
    public func capableLoads() -> [AgentKey: ReportedLoad] {
        state.withLockedValue { state in
            var loads: [AgentKey: ReportedLoad] = [:]
            for (tenant, capabilities) in state.capabilities {
                for agentID in capabilities.values.reduce(into: Set<String>(), { $0.formUnion($1) }) {
                    let key = AgentKey(tenant: tenant, agentID: agentID)
                    guard let session = state.byAgent[key] else { continue }
                    loads[key] =
                        session.load.readiness == .ready && !session.isDraining
                        ? .ready(inFlight: UInt32(clamping: session.load.inFlight)) : .notReady
                }
            }
            return loads
        }
    }

    /// The live, ready agent of `tenant` with `capability` and the fewest deliveries in flight.
    public func leastLoaded(tenant: String, capability: String, excluding: UInt32) -> AgentSession? {
        state.withLockedValue { state in
            var best: AgentSession?
            var bestLoad = Int.max
            for agentID in state.capabilities[tenant]?[capability] ?? [] {
                guard let session = state.byAgent[AgentKey(tenant: tenant, agentID: agentID)],
                    session.number != excluding, session.load.readiness == .ready,
                    !session.isDraining
                else { continue }
                let load = session.load.inFlight
                if load < bestLoad || (load == bestLoad && agentID < (best?.identity.agentID ?? "\u{10FFFF}")) {
                    best = session
                    bestLoad = load
                }
            }
            return best
        }
    }

    /// Adds a subscription of session `number` in `tenant`.
    func subscribe(tenant: String, pattern: [Substring], number: UInt32) {
        state.withLockedValue { state in
            state.topics[tenant, default: SubscriptionIndex()].insert(pattern, number)
            countChange()
        }
    }

    /// Removes a subscription. - Returns: whether it existed.
    func unsubscribe(tenant: String, pattern: [Substring], number: UInt32) -> Bool {
        state.withLockedValue { state in
            countChange()
            return state.topics[tenant]?.remove(pattern, number) ?? false
        }
    }

    /// Live sessions of `tenant` subscribed to a pattern matching `topic`, and the change count they
    /// were read at.
    func subscribers(tenant: String, topic: String) -> (sessions: [AgentSession], at: UInt64) {
        state.withLockedValue { state in
            (
                (state.topics[tenant]?.subscribers(of: topic) ?? []).compactMap { state.byNumber[$0] },
                changes.load(ordering: .relaxed)
            )
        }
    }

    /// Every live session (shutdown).
    var all: [AgentSession] { state.withLockedValue { Array($0.byNumber.values) } }
}
