import Foundation

/// The targets of the context scenarios, measured by `acb-bench --scenarios contexts` (the NATS
/// figures with `nats-server -js`, ACB's puts on a bus with PostgreSQL).
extension PerformanceTarget {
    static let contexts: [PerformanceTarget] = [
        absolute("ctx-put:10", "≥ 20,000 committed updates/s") {
            ($0.rate >= 20_000, String(format: "%.0f /s", $0.rate))
        },
        relative("ctx-get:1", "p50 ≤ 1.0× NATS KV get", { $0.latency?.p50 }, higherIsBetter: false, unit: "µs"),
        absolute("ctx-get:10", "≥ 50,000 gets/s") {
            ($0.rate >= 50_000, String(format: "%.0f /s", $0.rate))
        },
        absolute("ctx-watch:100", "p99 ≤ 5 ms from the writer's send") {
            guard let latency = $0.latency else { return (false, "no deliveries") }
            return (latency.p99 <= 5_000, String(format: "%.0f µs", latency.p99))
        },
        absolute("ctx-watch:100", "every watcher sees every version, in order") {
            ($0.received > 0 && $0.lost == 0 && $0.duplicates == 0, "\($0.lost) missed, \($0.duplicates) repeated")
        },
        absolute("ctx-cas:10", "no lost updates (final value = compare-and-swaps committed)") {
            ($0.expected > 0 && $0.lost == 0, "\($0.lost) lost of \($0.expected)")
        },
    ]
}
