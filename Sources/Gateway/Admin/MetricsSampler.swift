import Actors
import Bus
import Persistence
import Prometheus
import Synchronization

/// Reads what the bus can tell at any moment (sessions, connections, queue depths, spools,
/// sidecar batches) into the Prometheus registry, when metrics are scraped: nothing on the hot
/// path keeps these up to date.
final class MetricsSampler: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let supervisor: Supervisor
    private let sidecars: AdminAPI.Sidecars
    private let children: [ChildStatus]
    private let connections: @Sendable () -> Int
    /// The monotonic counts of the last sample, so counters grow by the difference.
    private let previous = Mutex<[String: Int]>([:])

    init(
        registry: PrometheusCollectorRegistry, supervisor: Supervisor, sidecars: AdminAPI.Sidecars,
        children: [ChildStatus], connections: @escaping @Sendable () -> Int
    ) {
        self.registry = registry
        self.supervisor = supervisor
        self.sidecars = sidecars
        self.children = children
        self.connections = connections
    }

    /// Updates every sampled metric.
    func sample() {
        let load = supervisor.load
        gauge("acb_connections", "Open agent connections, handshaking ones included", Double(connections()))
        gauge("acb_agents_online", "Agents with a live session", Double(load.sessions))
        gauge("acb_agents_registered", "Agents in the registry", Double(load.registered))
        let depth = "Messages waiting in a queue of the bus"
        gauge("acb_queue_depth", depth, Double(load.queuedDeliveries), ["queue": "mailboxes"])
        if let store = sidecars.store { gauge("acb_queue_depth", depth, Double(store.queued), ["queue": "postgres"]) }
        if let shared = sidecars.shared { gauge("acb_queue_depth", depth, Double(shared.queued), ["queue": "redis"]) }
        for (name, up, spooled, batches) in sidecars.states {
            sidecar(name, up: up, spooled: spooled, batches: batches)
        }
        for child in children { supervised(child.current) }
        if let cluster = supervisor.cluster {
            gauge("acb_cluster_nodes", "Live nodes of the cluster, this one included", Double(cluster.members.count))
        }
    }

    private func supervised(_ child: ChildStatus.Snapshot) {
        let labels = ["child": child.name]
        gauge("acb_child_up", "1 while the supervised child runs (or finished its work)", child.isUp ? 1 : 0, labels)
        gauge(
            "acb_child_last_failure_seconds", "When the supervised child last failed (Unix seconds; 0: never)",
            Double(child.lastFailureAt ?? 0) / 1_000, labels)
        count("acb_child_restarts_total", "Restarts of the supervised child after it failed", child.restarts, labels)
    }

    private func sidecar(_ name: String, up: Bool, spooled: Int, batches: Int) {
        let labels = ["sidecar": name]
        gauge(
            "acb_sidecar_up", "1 while the sidecar takes writes (Kafka: while the journal has room)", up ? 1 : 0,
            labels)
        gauge(
            "acb_sidecar_spool_bytes", "Bytes waiting on disk for the sidecar (Kafka: journaled, not confirmed)",
            Double(spooled), labels)
        count(
            "acb_sidecar_batches_total",
            "Batches written: PostgreSQL transactions, Redis pipelines, audit records confirmed by Kafka", batches,
            labels)
    }

    /// Brings a counter up to `total`, a count the bus keeps since it started.
    private func count(_ name: String, _ help: String, _ total: Int, _ labels: [String: String]) {
        let key = "\(name)\(labels.sorted { $0.key < $1.key })"
        let delta = previous.withLock { previous in
            defer { previous[key] = total }
            return total - (previous[key] ?? 0)
        }
        registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
            labels: labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        ).increment(by: Int64(max(delta, 0)))
    }

    private func gauge(_ name: String, _ help: String, _ value: Double, _ labels: [String: String] = [:]) {
        registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
            labels: labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        ).set(value)
    }
}
