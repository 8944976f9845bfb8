/// One live node of a cluster as this node's copy of the directory last read it (docs/cluster.md):
/// what the admin API and the metrics show of the other nodes.
public struct ClusterMember: Sendable, Equatable {
    /// What a node reports of itself with each renewal of its key (every 250 ms).
    public struct Load: Sendable, Equatable {
        /// Live agent sessions on the node.
        public var sessions: Int
        /// Messages waiting in those sessions' queues.
        public var queuedDeliveries: Int

        public init(sessions: Int, queuedDeliveries: Int) {
            self.sessions = sessions
            self.queuedDeliveries = queuedDeliveries
        }

        /// As kept in Redis: the two counts, a space between.
        public var text: String { "\(sessions) \(queuedDeliveries)" }

        /// Reads ``text``; nil for anything else.
        public init?(text: String) {
            let parts = text.split(separator: " ")
            guard parts.count == 2, let sessions = Int(parts[0]), let queued = Int(parts[1]) else { return nil }
            self.init(sessions: sessions, queuedDeliveries: queued)
        }
    }

    public var nodeID: String
    /// What it last reported; zero until its first report.
    public var load: Load
    /// Agents the directory places on the node.
    public var agents: Int

    public init(nodeID: String, load: Load, agents: Int) {
        self.nodeID = nodeID
        self.load = load
        self.agents = agents
    }
}

/// An agent offering capabilities as its node reports it to the other nodes of its cluster, for
/// capability routing (docs/cluster.md).
public enum ReportedLoad: Sendable, Equatable {
    /// Ready, with this many deliveries in flight.
    case ready(inFlight: UInt32)
    /// Busy or draining: it takes no capability target.
    case notReady

    /// As kept in Redis: the count, or `-`.
    public var text: String {
        switch self {
        case .ready(let inFlight): "\(inFlight)"
        case .notReady: "-"
        }
    }

    /// Reads ``text``; nil for anything else.
    public init?(text: String) {
        if text == "-" {
            self = .notReady
        } else if let inFlight = UInt32(text) {
            self = .ready(inFlight: inFlight)
        } else {
            return nil
        }
    }
}
