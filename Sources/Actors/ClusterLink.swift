public import Bus

/// What the bus needs from the other nodes of its cluster (docs/cluster.md): where an agent's live
/// session is, and a way to hand a record to another node. An implementation over Redis (the
/// directory, membership) and Kafka (traffic) plugs in; a bus without one is a single node, and its
/// hot path never asks.
///
/// Implementations never block the caller: calls come from event loops.
public protocol ClusterLink: Sendable {
    /// The cluster's name.
    var name: String { get }
    /// This node's id, unique among the live nodes.
    var nodeID: String { get }
    /// Added to every id this node makes (message ids) so that ids stay unique across the cluster:
    /// in 0..<``ClusterRecord/idStride``, unique among the live nodes.
    var idSlot: UInt64 { get }
    /// The live node other than this one where `key` has its session, from this node's copy of
    /// the directory (it may lag by a moment: see ``stored(for:)``).
    func node(of key: AgentKey) -> String?
    /// The live nodes other than this one, as of the copy's last refresh.
    var otherNodes: [String] { get }
    /// The live nodes other than this one with sessions of `tenant`'s agents, from the same copy:
    /// where a BROADCAST or PUBLISH of the tenant goes.
    func nodes(withMembersOf tenant: String) -> [String]
    /// `key`'s session opened on this node: the directory records it (and the node that held it
    /// before, or holds deliveries of its ended session, hears of the takeover), then `done` runs,
    /// on any thread.
    func attached(_ key: AgentKey, at: UInt64, done: @escaping @Sendable () -> Void)
    /// `key`'s session here ended with no successor here: the directory forgets it, unless
    /// another node has taken it since. If this node keeps deliveries of it for `holdingMs` (0:
    /// none), the directory names this node for as long, so that the agent's next session
    /// elsewhere asks for them.
    func detached(_ key: AgentKey, holdingMs: UInt64)
    /// Hands `record` to `node`; `done` gets nil once the transport holds it, or why it could not.
    /// A full outbound queue refuses at once with ``ErrorCode/overloaded``.
    func forward(_ record: ClusterRecord, to node: String, done: @escaping @Sendable (BusError?) -> Void)
    /// Gives `count` of the send window of session `number` on `node` back to it (a `credit`
    /// record): that many of its SENDs to this node's agents left their queues. Never refused for a
    /// full outbound queue, so that no window shrinks for good: such records come only for messages
    /// that came from other nodes and were taken from this node's bounded queues.
    func returnCredit(_ count: Int, to number: UInt32, of tenant: String, on node: String)
    /// A message was stored for `key`, which has no session on this node: the node that holds its
    /// session, looked up afresh in the directory, is told to read its backlog.
    func stored(for key: AgentKey)
    /// Looks `key` up in the directory itself, not this node's copy; `then` gets the live node other
    /// than this one that holds its session (nil: none, or the directory cannot be reached), on any
    /// thread. The copy learns the answer.
    func lookup(_ key: AgentKey, then: @escaping @Sendable (String?) -> Void)
    /// Every live node, this one included, with the load it reported and the agents the directory
    /// places on it, as of the copy's last refresh (for operators).
    var members: [ClusterMember] { get }
    /// The live node, this one included, that writes `tenant`'s contexts (their home), from this
    /// node's copy of the directory; nil when none, or when it would be this node but its lease
    /// in the directory may have lapsed.
    func contextHome(of tenant: String) -> String?
    /// Makes this node the home of `tenant`'s contexts unless a live node is; `then` gets the home,
    /// nil when the directory cannot be reached, on any thread. The copy learns the answer.
    func claimContexts(of tenant: String, then: @escaping @Sendable (String?) -> Void)
    /// The result every node keeps in Redis for idempotency key `scopedKey` (`tenant/agent/key`), and
    /// how long it has left; `then` gets nil when there is none or Redis cannot be reached, on any
    /// thread.
    func sharedIdempotencyKey(
        _ scopedKey: String, then: @escaping @Sendable ((result: String, ttlMs: UInt64)?) -> Void)
    /// The readiness and deliveries in flight of `key`'s session on another node, if it offers a
    /// capability, as that node last reported (every refresh); nil when not reported.
    func remoteLoad(of key: AgentKey) -> ReportedLoad?
    /// Starts handing what other nodes send this one to `inbox`, one record at a time, in order,
    /// and reporting `load()` and `capable()` (this node's agents offering capabilities, their
    /// readiness and deliveries in flight) to the other nodes. Returns once the other nodes know this one,
    /// so that what they send every node from then on reaches it. May block.
    func start(
        inbox: @escaping @Sendable (ClusterRecord) -> Void, load: @escaping @Sendable () -> ClusterMember.Load,
        capable: @escaping @Sendable () -> [AgentKey: ReportedLoad])
    /// Leaves the cluster: sends what is queued, stops taking records, and the directory forgets
    /// this node. Called once, at shutdown, after the sessions closed. May block.
    func close()
}
