import Bus
import Foundation
import Logging
import NIOConcurrencyHelpers

/// A cluster's membership and directory in Redis (docs/cluster.md), and this node's copy of them.
///
/// Keys, under `acb:cluster:<cluster>:`:
/// - `node:<id>`: exists while node `id` lives (its time to live is renewed every refresh); its
///   value is the node's load (``ClusterMember/Load/text``);
/// - `slot:<n>`: the id slot node `id` holds (``ClusterRecord/idStride`` of them), renewed with it;
/// - `agents`: a hash from `<tenant>/<agent>` to the node holding the agent's live session;
/// - `held:<tenant>/<agent>`: the node that holds deliveries of the agent's ended session (streams
///   it took and did not acknowledge), for as long as that node keeps them; the node the agent
///   opens a session on next takes it and asks for them;
/// - `contexts`: a hash from a tenant to the home of its contexts, the node that writes them;
/// - `load:<id>`: a hash from `<tenant>/<agent>` to the deliveries in flight of node `id`'s agents
///   that offer capabilities (`-`: not ready), replaced at every refresh, living as long as the node key.
///
/// Writes (a session opened or ended) and fresh lookups queue here and run on the directory's
/// thread, one pipeline per round; every refresh reads the live nodes and the whole hash again into
/// the copy that ``node(of:)`` reads without blocking. The copy may lag by one refresh: what is
/// stored meanwhile is announced after a fresh lookup (``lookup(_:then:)``).
final class ClusterDirectory: Sendable {
    struct Settings: Sendable {
        var redisURL: String
        var cluster: String
        var nodeID: String
        /// A node not heard from for this long is gone.
        var nodeTTLMs: UInt64 = 3_000
        /// How often the copy is read again and this node's keys renewed.
        var refreshMs: UInt64 = 250
    }

    private enum Operation {
        /// `key` opened here: `holders` gets the other live nodes that held its session before or
        /// hold deliveries of an ended one once Redis answered; `done` runs then, or when Redis
        /// failed (and the write waits for it).
        case attach(AgentKey, holders: @Sendable (Set<String>) -> Void, done: @Sendable () -> Void)
        /// `key`'s session here ended; this node keeps its deliveries for `holdMs` (0: none).
        case detach(AgentKey, holdMs: UInt64)
        case lookup(AgentKey, then: @Sendable (String?) -> Void)
        /// Makes this node the home of the tenant's contexts unless a live node is.
        case claim(String, then: @Sendable (String?) -> Void)
        /// Reads an idempotency key's result and time left.
        case idempotency(String, then: @Sendable ((result: String, ttlMs: UInt64)?) -> Void)
    }

    private struct State {
        var pending: [Operation] = []
        var stopping = false
        /// Agents on other live nodes.
        var agents: [AgentKey: String] = [:]
        /// Per tenant, the other live nodes with sessions of its agents.
        var tenants: [String: [String]] = [:]
        var liveNodes: Set<String> = []
        /// The live nodes, this one included, by id.
        var members: [ClusterMember] = []
        /// Per tenant, the live node that is the home of its contexts (this one included).
        var homes: [String: String] = [:]
        /// When the last renewal of this node's keys that Redis answered was sent (monotonic ms).
        var renewedAt: UInt64 = 0
        /// What this node reports of itself at each renewal.
        var load: @Sendable () -> ClusterMember.Load = { ClusterMember.Load(sessions: 0, queuedDeliveries: 0) }
        var capable: @Sendable () -> [AgentKey: ReportedLoad] = { [:] }
        /// The other nodes' agents offering capabilities, with their readiness and load.
        var remoteLoads: [AgentKey: ReportedLoad] = [:]
    }

    let settings: Settings
    /// This node's id slot, claimed at start.
    let slot: UInt64
    /// When this node announced itself (monotonic ms): other nodes know it one refresh later.
    let announcedAt: UInt64
    let thread = WorkerThread(name: "cluster-directory")
    private let state = NIOLockedValueBox(State())

    private var prefix: String { "acb:cluster:\(settings.cluster):" }
    private var agentsKey: String { prefix + "agents" }
    private var homesKey: String { prefix + "contexts" }
    /// The `held:` key of the directory field `field` (`<tenant>/<agent>`).
    private func heldKey(_ field: String) -> String { prefix + "held:" + field }

    /// Claims an id slot and announces the node. - Throws: when Redis cannot be reached, when a
    /// live node has this node's id, or when every slot is taken.
    init(settings: Settings) throws(SidecarError) {
        self.settings = settings
        let redis = try RedisConnection(url: settings.redisURL)
        let ttl = "\(settings.nodeTTLMs)"
        let prefix = "acb:cluster:\(settings.cluster):"
        let idle = ClusterMember.Load(sessions: 0, queuedDeliveries: 0).text
        guard try redis.command("SET", prefix + "node:" + settings.nodeID, idle, "NX", "PX", ttl) == .status("OK")
        else {
            throw SidecarError(
                message: "a live node of cluster \(settings.cluster) has node id \(settings.nodeID)",
                connectionLost: false)
        }
        announcedAt = MonotonicClock.nowMs()
        // An earlier run of this id may have been the home of contexts it committed and never
        // sent: it gives them up, so the next write claims them and every node reads them again.
        _ = try redis.command("EVAL", Self.forsakeScript, "1", prefix + "contexts", settings.nodeID)
        for slot in 0..<ClusterRecord.idStride
        where try redis.command("SET", prefix + "slot:\(slot)", settings.nodeID, "NX", "PX", ttl) == .status("OK") {
            self.slot = slot
            return
        }
        _ = try? redis.command("DEL", prefix + "node:" + settings.nodeID)
        throw SidecarError(
            message: "cluster \(settings.cluster) has \(ClusterRecord.idStride) live nodes already",
            connectionLost: false)
    }

    /// The live node other than this one holding `key`'s session, as of the last refresh.
    func node(of key: AgentKey) -> String? {
        state.withLockedValue { $0.agents[key] }
    }

    /// The other live nodes with sessions of `tenant`'s agents, as of the last refresh.
    func nodes(withMembersOf tenant: String) -> [String] {
        state.withLockedValue { $0.tenants[tenant] ?? [] }
    }

    /// The live nodes, this one included, as of the last refresh.
    var liveNodes: Set<String> { state.withLockedValue { $0.liveNodes } }

    /// The live nodes, this one included, with their loads and agents, as of the last refresh.
    var members: [ClusterMember] { state.withLockedValue { $0.members } }

    /// Sets what this node reports of itself from the next renewal on: its load, and its agents
    /// that offer capabilities with their readiness and deliveries in flight.
    func report(
        _ load: @escaping @Sendable () -> ClusterMember.Load,
        capable: @escaping @Sendable () -> [AgentKey: ReportedLoad]
    ) {
        state.withLockedValue { state in
            state.load = load
            state.capable = capable
        }
    }

    /// The readiness and load of `key`'s session on another node, if it offers a capability, as of
    /// the last refresh.
    func remoteLoad(of key: AgentKey) -> ReportedLoad? {
        state.withLockedValue { $0.remoteLoads[key] }
    }

    /// The home of `tenant`'s contexts as of the last refresh or claim; nil when none, or when it is
    /// this node but its keys were last renewed so long ago that they may have expired (another
    /// node may then claim the home: this one must not write meanwhile).
    func contextHome(of tenant: String) -> String? {
        state.withLockedValue { state in
            guard let home = state.homes[tenant] else { return nil }
            guard home == settings.nodeID else { return home }
            // A margin for the renewal's own trip to Redis and for clocks that run a little apart.
            return MonotonicClock.nowMs() + 1_000 < state.renewedAt + settings.nodeTTLMs ? home : nil
        }
    }

    /// Makes this node the home of `tenant`'s contexts unless a live node is; `then` gets the home,
    /// nil when Redis cannot be reached.
    func claimContexts(of tenant: String, then: @escaping @Sendable (String?) -> Void) {
        submit(.claim(tenant, then: then))
    }

    /// Reads the result kept in Redis for idempotency key `scopedKey`, and its time left; `then` gets
    /// nil when there is none or Redis cannot be reached.
    func sharedIdempotencyKey(
        _ scopedKey: String, then: @escaping @Sendable ((result: String, ttlMs: UInt64)?) -> Void
    ) {
        submit(.idempotency(scopedKey, then: then))
    }

    /// Records that `key`'s session opened here. Once Redis answered, `holders` gets the other
    /// live nodes that held its session or hold deliveries of an ended one, then `done` runs;
    /// while Redis is unreachable `done` runs at once, and `holders` when the write is through.
    func attach(
        _ key: AgentKey, holders: @escaping @Sendable (Set<String>) -> Void, done: @escaping @Sendable () -> Void
    ) {
        guard thread.status.current.state == .running else {
            done()
            return submit(.attach(key, holders: holders, done: {}))
        }
        submit(.attach(key, holders: holders, done: done))
    }

    /// Forgets `key`'s session here, unless another node took it since; if this node keeps its
    /// deliveries for `holdMs`, the directory says so for as long.
    func detach(_ key: AgentKey, holdMs: UInt64) { submit(.detach(key, holdMs: holdMs)) }

    /// Looks `key` up in Redis itself (not the copy); `then` gets the node, nil when none or unreachable.
    func lookup(_ key: AgentKey, then: @escaping @Sendable (String?) -> Void) {
        submit(.lookup(key, then: then))
    }

    private func submit(_ operation: Operation) {
        state.withLockedValue { $0.pending.append(operation) }
        thread.wake()
    }

    /// Runs the directory's thread until ``stop()``; then this node's keys are removed.
    func start(logger: Logger) {
        thread.start(logger: logger) { [self] in
            var nextRefresh: UInt64 = 0
            var redis: RedisConnection?
            while true {
                try thread.checkpoint()
                let (operations, stopping) = state.withLockedValue { state in
                    defer { state.pending.removeAll() }
                    return (state.pending, state.stopping)
                }
                do {
                    let connection = try redis ?? RedisConnection(url: settings.redisURL)
                    redis = connection
                    if MonotonicClock.nowMs() >= nextRefresh {
                        try refresh(connection)
                        nextRefresh = MonotonicClock.nowMs() + settings.refreshMs
                    }
                    if !operations.isEmpty { try run(operations, on: connection) }
                    if stopping {
                        _ = try connection.pipeline([
                            ["DEL", prefix + "node:" + settings.nodeID], ["DEL", prefix + "slot:\(slot)"],
                            ["DEL", prefix + "load:" + settings.nodeID],
                        ])
                        return
                    }
                } catch {
                    failed(operations)
                    throw error
                }
                thread.sleep(seconds: Double(settings.refreshMs) / 1_000)
            }
        }
    }

    /// Ends the thread after one more round, which leaves the cluster, and waits for it.
    func stop() {
        state.withLockedValue { $0.stopping = true }
        thread.stop()
        thread.join()
    }

    /// Redis failed with `operations` taken: their completions run now, and the writes are queued
    /// again for when it is back.
    private func failed(_ operations: [Operation]) {
        var retried: [Operation] = []
        for operation in operations {
            switch operation {
            case .attach(let key, let holders, let done):
                done()
                retried.append(.attach(key, holders: holders, done: {}))
            case .detach:
                retried.append(operation)
            case .lookup(_, let then), .claim(_, let then):
                then(nil)
            case .idempotency(_, let then):
                then(nil)
            }
        }
        state.withLockedValue { $0.pending.insert(contentsOf: retried, at: 0) }
    }

    /// Runs `operations` in one pipeline.
    private func run(_ operations: [Operation], on redis: RedisConnection) throws(SidecarError) {
        let commands = operations.map { operation -> [String] in
            switch operation {
            case .attach(let key, _, _):
                ["EVAL", Self.swapScript, "2", agentsKey, heldKey(key.description), key.description, settings.nodeID]
            case .detach(let key, let holdMs):
                [
                    "EVAL", Self.leaveScript, "2", agentsKey, heldKey(key.description), key.description,
                    settings.nodeID, "\(holdMs)",
                ]
            case .lookup(let key, _):
                ["HGET", agentsKey, key.description]
            case .claim(let tenant, _):
                ["EVAL", Self.claimScript, "1", homesKey, tenant, settings.nodeID, prefix + "node:"]
            case .idempotency(let scopedKey, _):
                [
                    "EVAL", "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}", "1",
                    RedisState.idempotencyPrefix + scopedKey,
                ]
            }
        }
        let replies = try redis.pipeline(commands)
        let live = liveNodes
        for (operation, reply) in zip(operations, replies) {
            switch operation {
            case .attach(_, let holders, let done):
                if case .array(let nodes) = reply {
                    holders(Set(nodes.compactMap(\.text).filter { $0 != settings.nodeID && live.contains($0) }))
                }
                done()
            case .detach:
                break
            case .lookup(let key, let then):
                let node = reply.text.flatMap { live.contains($0) ? $0 : nil }
                if let node, node != settings.nodeID {
                    // The copy learns it now rather than at the next refresh.
                    state.withLockedValue { state in
                        state.agents[key] = node
                        if !(state.tenants[key.tenant] ?? []).contains(node) {
                            state.tenants[key.tenant, default: []].append(node)
                        }
                    }
                }
                then(node)
            case .claim(let tenant, let then):
                let home = reply.text
                if let home { state.withLockedValue { $0.homes[tenant] = home } }
                then(home)
            case .idempotency(_, let then):
                if case .array(let parts) = reply, parts.count == 2, let result = parts[0].text,
                    case .integer(let ttl) = parts[1], ttl > 0
                {
                    then((result, UInt64(ttl)))
                } else {
                    then(nil)
                }
            }
        }
    }

    /// Renews this node's keys (with its load) and reads the live nodes, their loads and the
    /// directory again. Entries of nodes that are gone are removed (their agents reconnect
    /// elsewhere, or are offline).
    private func refresh(_ redis: RedisConnection) throws(SidecarError) {
        let ttl = "\(settings.nodeTTLMs)"
        let (load, capable) = state.withLockedValue { ($0.load, $0.capable) }
        let loads = capable()
        let loadKey = prefix + "load:" + settings.nodeID
        // Replaced whole, under a name of its own first, so that readers never see half of it.
        let writeLoads: [[String]] =
            loads.isEmpty
            ? [["DEL", loadKey]]
            : [
                ["DEL", loadKey + ":next"],
                ["HSET", loadKey + ":next"] + loads.flatMap { [$0.key.description, $0.value.text] },
                ["PEXPIRE", loadKey + ":next", ttl], ["RENAME", loadKey + ":next", loadKey],
            ]
        let sent = MonotonicClock.nowMs()
        let replies = try redis.pipeline(
            [
                ["SET", prefix + "node:" + settings.nodeID, load().text, "PX", ttl],
                ["SET", prefix + "slot:\(slot)", settings.nodeID, "PX", ttl],
                ["KEYS", prefix + "node:*"],
                ["HGETALL", agentsKey],
                ["HGETALL", homesKey],
            ] + writeLoads)
        guard case .array(let nodeKeys) = replies[2], case .array(let fields) = replies[3],
            case .array(let homeFields) = replies[4]
        else {
            throw SidecarError(
                message: "Redis answered the cluster directory's read with \(replies)", connectionLost: true)
        }
        let keys = nodeKeys.compactMap(\.text)
        let nodeIDs = keys.map { String($0.dropFirst(prefix.count + "node:".count)) }
        let others = nodeIDs.filter { $0 != settings.nodeID }
        // A node whose key expired between the two reads has no load: it is left out.
        var values: [RedisReply] = []
        var remoteLoads: [AgentKey: ReportedLoad] = [:]
        if !keys.isEmpty {
            let read = try redis.pipeline([["MGET"] + keys] + others.map { ["HGETALL", prefix + "load:" + $0] })
            guard case .array(let loads) = read[0] else {
                throw SidecarError(message: "Redis answered the nodes' loads with \(read)", connectionLost: true)
            }
            values = loads
            for case .array(let fields) in read.dropFirst() {
                for pair in stride(from: 0, to: fields.count - 1, by: 2) {
                    guard let key = fields[pair].text.flatMap(AgentKey.init(field:)),
                        let load = fields[pair + 1].text.flatMap(ReportedLoad.init(text:))
                    else { continue }
                    remoteLoads[key] = load
                }
            }
        }
        let live = Set(nodeIDs)
        var agents: [AgentKey: String] = [:]
        var agentCounts: [String: Int] = [:]
        var gone: [[String]] = []
        for pair in stride(from: 0, to: fields.count - 1, by: 2) {
            guard let field = fields[pair].text, let node = fields[pair + 1].text else { continue }
            guard live.contains(node) else {
                gone.append(["EVAL", Self.leaveScript, "2", agentsKey, heldKey(field), field, node, "0"])
                continue
            }
            agentCounts[node, default: 0] += 1
            guard node != settings.nodeID, let key = AgentKey(field: field) else { continue }
            agents[key] = node
        }
        var tenants: [String: Set<String>] = [:]
        for (key, node) in agents { tenants[key.tenant, default: []].insert(node) }
        let members = zip(nodeIDs, values).compactMap { node, value in
            value.text.flatMap(ClusterMember.Load.init(text:)).map {
                ClusterMember(nodeID: node, load: $0, agents: agentCounts[node] ?? 0)
            }
        }
        var homes: [String: String] = [:]
        for pair in stride(from: 0, to: homeFields.count - 1, by: 2) {
            guard let tenant = homeFields[pair].text, let node = homeFields[pair + 1].text, live.contains(node)
            else { continue }
            homes[tenant] = node
        }
        state.withLockedValue { state in
            state.renewedAt = sent
            state.homes = homes
            state.remoteLoads = remoteLoads
            state.agents = agents
            state.tenants = tenants.mapValues { $0.sorted() }
            state.liveNodes = live
            state.members = members.sorted { $0.nodeID < $1.nodeID }
        }
        if !gone.isEmpty { _ = try redis.pipeline(Array(gone.prefix(1_000))) }
    }

    /// Sets field ARGV[1] to node ARGV[2]; returns what it was and the node KEYS[2] named, which it
    /// removes.
    private static let swapScript = """
        local previous = redis.call('HGET', KEYS[1], ARGV[1])
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        local held = redis.call('GET', KEYS[2])
        redis.call('DEL', KEYS[2])
        return {previous, held}
        """

    /// Removes field ARGV[1] if node ARGV[2] still holds it, and then, if ARGV[3] is not 0, names
    /// that node in KEYS[2] for ARGV[3] ms.
    private static let leaveScript = """
        if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
        redis.call('HDEL', KEYS[1], ARGV[1])
        if ARGV[3] ~= '0' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
        return 0
        """

    /// Returns the node hash field ARGV[1] names if that node lives (its key, ARGV[3] followed by its
    /// id, exists), else sets the field to node ARGV[2] and returns it; nil if node ARGV[2] itself
    /// is not live (its key expired: it must not take a home). The node keys are not passed as
    /// KEYS: this runs on a single Redis, not Redis Cluster.
    private static let claimScript = """
        if redis.call('EXISTS', ARGV[3] .. ARGV[2]) == 0 then return false end
        local home = redis.call('HGET', KEYS[1], ARGV[1])
        if home and redis.call('EXISTS', ARGV[3] .. home) == 1 then return home end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        return ARGV[2]
        """

    /// Removes every field of the hash that names node ARGV[1].
    private static let forsakeScript = """
        local fields = redis.call('HGETALL', KEYS[1])
        for i = 1, #fields, 2 do
            if fields[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[1], fields[i]) end
        end
        return 0
        """
}

extension AgentKey {
    /// Reads a hash field of the directory, `<tenant>/<agent>` (``description``).
    init?(field: String) {
        guard let slash = field.firstIndex(of: "/") else { return nil }
        self.init(tenant: String(field[..<slash]), agentID: String(field[field.index(after: slash)...]))
    }
}
