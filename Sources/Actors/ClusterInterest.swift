import Bus
import NIOCore
import NIOPosix
import Synchronization

/// Which topic patterns the nodes of a cluster have subscribers for, so that a PUBLISH goes only
/// to the nodes with a matching subscriber (docs/cluster.md, *BROADCAST and PUBLISH*).
///
/// Each node tells the others of its own patterns as they come and go (an `interest` record when
/// the first session here subscribes to a pattern, and when the last one drops it), and sends a
/// node it has not exchanged with yet its whole set (`interestSet`), which answers with its own.
/// A node's set and the changes that follow it are handed to the transport under one lock, so
/// they arrive in the order they happened. A node whose set is not known here gets every PUBLISH
/// of a tenant it has agents of, as before the exchange.
final class ClusterInterest: Sendable {
    /// How long an exchange waits for its answer before it is asked again.
    static let askAgainMs: UInt64 = 2_000
    /// How long a new pattern waits for a node to say it applied it.
    static let answerTimeout = TimeAmount.seconds(2)

    private struct Local {
        /// This node's patterns per tenant, with how many sessions here subscribe to each.
        var counts: [String: [String: Int]] = [:]
        /// The nodes told of this node's set, which get its changes.
        var peers: Set<String> = []
        /// When this node last sent each node its set (monotonic ms), waiting for its answer.
        var asked: [String: UInt64] = [:]
        /// Patterns new here that the other nodes are being told of (numbered by `told`), with
        /// who waits for that.
        var telling: [Entry: (told: UInt64, waiting: [@Sendable () -> Void])] = [:]
        var told: UInt64 = 0
    }

    private struct Remote {
        /// Per tenant, the other nodes subscribed to each pattern.
        var index: [String: SubscriptionIndex<String>] = [:]
        /// Per node whose set is known, its patterns, as (tenant, pattern tokens).
        var sets: [String: Set<Entry>] = [:]
    }

    private struct Entry: Hashable {
        var tenant: String
        var pattern: String
        var tokens: [Substring] { pattern.split(separator: ".", omittingEmptySubsequences: false) }
    }

    private let cluster: any ClusterLink
    private let local = Mutex(Local())
    private let remote = Mutex(Remote())
    /// Nodes a change could not be handed to: they get the whole set again. A lock of its own, as
    /// the transport may answer within a call made under `local`'s.
    private let stale = Mutex<Set<String>>([])
    /// New patterns told to other nodes, waiting for each node's `interestApplied`.
    private let answers = PendingAnswers<Void>(capacity: 100_000)
    /// Where answers that must not run under a lock, and timeouts, run.
    private let loop: any EventLoop

    init(cluster: any ClusterLink, loop: any EventLoop) {
        self.cluster = cluster
        self.loop = loop
    }

    /// A session here subscribed to `pattern` of `tenant`; `done` runs once every other node has
    /// applied it (it answers `interestApplied`), or could not be told within
    /// ``answerTimeout`` (that node is sent the whole set again later): from then on a PUBLISH
    /// on any node reaches this one.
    func subscribed(tenant: String, pattern: String, done: @escaping @Sendable () -> Void) {
        let known = local.withLock { local -> Bool in
            let key = Entry(tenant: tenant, pattern: pattern)
            local.counts[tenant, default: [:]][pattern, default: 0] += 1
            if local.counts[tenant]?[pattern] != 1 {
                // Known already, or being told: done once it is.
                guard local.telling[key] != nil else { return true }
                local.telling[key]?.waiting.append(done)
                return false
            }
            local.told &+= 1
            let told = local.told
            local.telling[key] = (told, [done])
            let record = ClusterRecord(
                kind: .interest, node: cluster.nodeID, tenant: tenant, subject: pattern, status: 1)
            tell(&local, record) { [self] in
                let waiting = self.local.withLock { local -> [@Sendable () -> Void] in
                    // A later telling of the pattern (dropped and subscribed again meanwhile) answers its own.
                    guard local.telling[key]?.told == told else { return [] }
                    return local.telling.removeValue(forKey: key)?.waiting ?? []
                }
                for done in waiting { done() }
            }
            return false
        }
        if known { done() }
    }

    /// A session here no longer subscribes to `pattern` of `tenant` (it unsubscribed or ended).
    func unsubscribed(tenant: String, pattern: String) {
        local.withLock { local in
            guard let count = local.counts[tenant]?[pattern] else { return }
            guard count == 1 else {
                local.counts[tenant]?[pattern] = count - 1
                return
            }
            local.counts[tenant]?[pattern] = nil
            if local.counts[tenant]?.isEmpty == true { local.counts[tenant] = nil }
            tell(&local, ClusterRecord(kind: .interest, node: cluster.nodeID, tenant: tenant, subject: pattern))
        }
    }

    /// Hands `record` to every peer and every live node, under the local lock; `applied` (if any)
    /// runs, on any thread but never under the lock, once each has answered that it applied it,
    /// or failed to within ``answerTimeout``.
    private func tell(_ local: inout Local, _ record: ClusterRecord, applied: (@Sendable () -> Void)? = nil) {
        let nodes = local.peers.union(cluster.otherNodes)
        guard let applied else {
            for node in nodes {
                cluster.forward(record, to: node) { [self] error in
                    if error != nil { stale.withLock { _ = $0.insert(node) } }
                }
            }
            return
        }
        guard !nodes.isEmpty else { return loop.execute(applied) }
        let waiting = Atomic(nodes.count)
        let answered: @Sendable () -> Void = {
            if waiting.subtract(1, ordering: .relaxed).newValue == 0 { applied() }
        }
        for node in nodes {
            // A node that cannot be told now is sent the whole set again later.
            let missed: @Sendable (UInt64) -> Void = { [self] number in
                guard let answer = answers.take(number) else { return }
                stale.withLock { _ = $0.insert(node) }
                answer(())
            }
            guard let number = answers.add({ _ in answered() }) else {
                stale.withLock { _ = $0.insert(node) }
                loop.execute(answered)
                continue
            }
            loop.scheduleTask(in: Self.answerTimeout) { missed(number) }
            var asked = record
            asked.correlationID = number
            cluster.forward(asked, to: node) { [loop] error in
                if error != nil { loop.execute { missed(number) } }
            }
        }
    }

    /// The live nodes a PUBLISH of `tenant` on `topic` goes to: each known to have a subscriber
    /// whose pattern matches, and each whose set is not known yet (it may have one: it acknowledged
    /// a new pattern it could not apply).
    func nodes(for tenant: String, topic: String) -> [String] {
        let live = cluster.otherNodes
        return remote.withLock { remote in
            let matching = remote.index[tenant]?.subscribers(of: topic) ?? []
            return live.filter { remote.sets[$0] == nil || matching.contains($0) }
        }
    }

    /// A record about another node's interest.
    func receive(_ record: ClusterRecord) {
        switch record.kind {
        case .interestApplied:
            answers.take(record.correlationID)?(())
        case .interest:
            remote.withLock { remote in
                guard remote.sets[record.node] != nil else { return }
                let entry = Entry(tenant: record.tenant, pattern: record.subject)
                if record.status == 1 {
                    remote.sets[record.node]?.insert(entry)
                    remote.index[entry.tenant, default: SubscriptionIndex()].insert(entry.tokens, record.node)
                } else if remote.sets[record.node]?.remove(entry) != nil {
                    remote.index[entry.tenant]?.remove(entry.tokens, record.node)
                }
            }
            guard record.correlationID != 0 else { return }
            let applied = ClusterRecord(
                kind: .interestApplied, node: cluster.nodeID, tenant: record.tenant, correlationID: record.correlationID
            )
            cluster.forward(applied, to: record.node) { _ in }
        case .interestSet:
            replace(record.node, with: Self.decode(record.payload))
            // It asks for this node's set in return, and gets its changes from now on.
            if record.status == 1 {
                local.withLock { send(&$0, to: record.node, asking: false) }
            } else {
                local.withLock { _ = $0.asked.removeValue(forKey: record.node) }
            }
        default:
            break
        }
    }

    /// Exchanges sets with the live nodes whose set is not known (or not asked lately), sends
    /// those a change missed the whole set again, and forgets nodes that are gone. Called every
    /// housekeeping round.
    func refresh(now: UInt64) {
        let live = Set(cluster.otherNodes)
        let known = remote.withLock { remote in
            for node in remote.sets.keys where !live.contains(node) { forget(node, in: &remote) }
            return Set(remote.sets.keys)
        }
        let missed = stale.withLock { stale in
            defer { stale = [] }
            return stale.intersection(live)
        }
        local.withLock { local in
            local.peers.formIntersection(live)
            local.asked = local.asked.filter { live.contains($0.key) }
            for node in live.subtracting(known) where local.asked[node].map({ $0 + Self.askAgainMs <= now }) ?? true {
                local.asked[node] = now
                send(&local, to: node, asking: true)
            }
            for node in missed { send(&local, to: node, asking: false) }
        }
    }

    /// Sends `node` this node's whole set, and makes it a peer.
    private func send(_ local: inout Local, to node: String, asking: Bool) {
        var payload = ByteBuffer()
        for (tenant, patterns) in local.counts {
            for pattern in patterns.keys {
                payload.writeWireString(tenant)
                payload.writeWireString(pattern)
            }
        }
        local.peers.insert(node)
        let record = ClusterRecord(
            kind: .interestSet, node: cluster.nodeID, tenant: "", status: asking ? 1 : 0, payload: payload)
        cluster.forward(record, to: node) { [self] error in
            if error != nil { stale.withLock { _ = $0.insert(node) } }
        }
    }

    private func replace(_ node: String, with entries: Set<Entry>) {
        remote.withLock { remote in
            forget(node, in: &remote)
            remote.sets[node] = entries
            for entry in entries {
                remote.index[entry.tenant, default: SubscriptionIndex()].insert(entry.tokens, node)
            }
        }
    }

    private func forget(_ node: String, in remote: inout Remote) {
        for entry in remote.sets.removeValue(forKey: node) ?? [] {
            remote.index[entry.tenant]?.remove(entry.tokens, node)
            if remote.index[entry.tenant]?.isEmpty == true { remote.index[entry.tenant] = nil }
        }
    }

    private static func decode(_ payload: ByteBuffer) -> Set<Entry> {
        var payload = payload
        var entries = Set<Entry>()
        while let tenant = payload.readWireString(), let pattern = payload.readWireString() {
            entries.insert(Entry(tenant: tenant, pattern: pattern))
        }
        return entries
    }
}

extension ByteBuffer {
    /// Reads a `str` field (u16 length and UTF-8 bytes); nil at the end or if it is cut short.
    fileprivate mutating func readWireString() -> String? {
        guard let length = readInteger(as: UInt16.self) else { return nil }
        return readString(length: Int(length))
    }
}
