/// The send window of a protocol 2 session on another node, whose SENDs reach this node's agents
/// (docs/cluster.md, *Credit across nodes*): what its receivers here take, or what is stored
/// for them here, goes back to its node, as a receiver on its own node gives a
/// ``SendWindow`` back.
final class RemoteSender: Sendable {
    /// The sender's node, and its session's number there.
    struct Key: Hashable, Sendable {
        let node: String
        let number: UInt32
    }

    let key: Key
    let tenant: String
    private let link: any ClusterLink

    init(_ key: Key, tenant: String, link: any ClusterLink) {
        self.key = key
        self.tenant = tenant
        self.link = link
    }

    /// `count` of the sender's messages left this node's queues.
    func give(_ count: Int) {
        link.returnCredit(count, to: key.number, of: tenant, on: key.node)
    }
}

/// What a protocol 2 session's SENDs to agents on other nodes hold of its send window, per node:
/// lent when a SEND leaves for a node, given back by that node's `credit` records, and given back
/// whole when the node is gone or has been silent for ``silenceMs`` (its records lost on the way).
struct RemoteCreditLedger {
    /// How long a node that holds some of the window may stay silent before it is given back.
    static let silenceMs: UInt64 = 20_000

    private var lent: [String: (count: Int, sinceMs: UInt64)] = [:]

    /// One SEND left for `node`.
    mutating func lend(to node: String, nowMs: UInt64) { change(node, by: 1, nowMs: nowMs) }

    /// `node` gave `count` back (possibly before this ledger lent it: the answers may cross).
    mutating func returned(_ count: Int, from node: String, nowMs: UInt64) { change(node, by: -count, nowMs: nowMs) }

    /// The silence clock runs from the node's last return, or from a lend to a node that held none.
    private mutating func change(_ node: String, by delta: Int, nowMs: UInt64) {
        let held = lent[node]?.count ?? 0
        let since = delta > 0 && held > 0 ? lent[node]?.sinceMs ?? nowMs : nowMs
        lent[node] = held + delta == 0 ? nil : (held + delta, since)
    }

    /// Takes back what nodes not in `live`, or silent for ``silenceMs``, hold: the count to give
    /// back to the window.
    mutating func reclaim(live: Set<String>, nowMs: UInt64) -> Int {
        var reclaimed = 0
        for (node, entry) in lent where entry.count > 0 {
            guard !live.contains(node) || nowMs >= entry.sinceMs + Self.silenceMs else { continue }
            reclaimed += entry.count
            lent[node] = nil
        }
        return reclaimed
    }

    /// Whether any node holds part of the window.
    var isEmpty: Bool { lent.isEmpty }
}
