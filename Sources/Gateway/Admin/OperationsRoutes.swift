import Actors
import Bus
import Hummingbird
import NIOCore
import Persistence
import Prometheus

/// `/healthz`, `/readyz` and `/metrics`: for probes and Prometheus, without a token.
extension AdminAPI {
    struct HealthView: Encodable {
        var status = "ok"
    }

    /// Each configured sidecar's state, and whether the bus is ready.
    struct ReadinessView: Encodable {
        struct Sidecar: Encodable {
            /// Takes writes now (Kafka: its journal has room, whether or not the broker is reachable).
            var up: Bool
            /// Writes waiting on disk for it (Kafka: journaled, not yet confirmed by the broker).
            var spooledBytes: Int
        }
        struct Child: Encodable {
            var state: ChildStatus.State
            var restarts: Int
            var lastFailure: String?
            /// Unix ms.
            var lastFailureAt: UInt64?
        }
        /// `ready`, `degraded` (a sidecar is down: the bus spools for it; or a supervised child is
        /// restarting or failed) or `shutting_down`.
        var status: String
        var postgres: Sidecar?
        var redis: Sidecar?
        var kafka: Sidecar?
        /// The supervised children by name.
        var children: [String: Child] = [:]
    }

    func addOperationsRoutes(to routes: AdminRoutes, registry: PrometheusCollectorRegistry, sampler: MetricsSampler) {
        routes.on(.get, "/healthz") { request, _ in
            _ = try request.query(allowing: [])
            return AdminJSON.response(HealthView())
        }
        routes.on(.get, "/readyz") { request, _ in
            _ = try request.query(allowing: [])
            var view = ReadinessView(status: "ready")
            for (name, up, spooledBytes, _) in sidecars.states {
                let sidecar = ReadinessView.Sidecar(up: up, spooledBytes: spooledBytes)
                switch name {
                case "postgres": view.postgres = sidecar
                case "redis": view.redis = sidecar
                default: view.kafka = sidecar
                }
                if !up { view.status = "degraded" }
            }
            for child in children.map(\.current) {
                view.children[child.name] = ReadinessView.Child(
                    state: child.state, restarts: child.restarts, lastFailure: child.lastFailure,
                    lastFailureAt: child.lastFailureAt)
                if !child.isUp { view.status = "degraded" }
            }
            if supervisor.isShuttingDown { view.status = "shutting_down" }
            return AdminJSON.response(view, status: view.status == "ready" ? .ok : .serviceUnavailable)
        }
        routes.on(.get, "/metrics") { request, _ in
            _ = try request.query(allowing: [])
            sampler.sample()
            var text = registry.emitToBuffer()
            if let cluster = supervisor.cluster { text = SeriesLabel.adding("node", cluster.nodeID, to: text) }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
    }
}
