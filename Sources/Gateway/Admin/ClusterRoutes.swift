import Actors
import Bus
import Hummingbird

/// `/api/v1/cluster`: the live nodes of this node's cluster, with their agents and load.
extension AdminAPI {
    struct ClusterView: Encodable {
        struct Node: Encodable {
            var nodeID: String
            /// The node that answered.
            var local: Bool
            /// Agents the cluster's directory places on the node.
            var agents: Int
            /// Live sessions and the messages waiting in their queues, as the node last reported.
            var sessions: Int
            var queuedDeliveries: Int
        }
        var cluster: String
        var nodeID: String
        var nodes: [Node]
    }

    func addClusterRoutes(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/cluster") { request, _ in
            try await caller(request).requireAdmin()
            _ = try request.query(allowing: [])
            guard let cluster = supervisor.cluster else {
                throw AdminError(.notFound, "this bus is a single node, not part of a cluster")
            }
            let nodes = cluster.members.map { member in
                ClusterView.Node(
                    nodeID: member.nodeID, local: member.nodeID == cluster.nodeID, agents: member.agents,
                    sessions: member.load.sessions, queuedDeliveries: member.load.queuedDeliveries)
            }
            return AdminJSON.response(ClusterView(cluster: cluster.name, nodeID: cluster.nodeID, nodes: nodes))
        }
    }
}
