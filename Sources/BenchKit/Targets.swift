import Foundation

/// The performance targets of the harness issue, each checked against a run.
public struct PerformanceTarget: Sendable {
    public let scenario: String
    public let goal: String
    /// ACB's figure, NATS's if it is a comparison, and whether the goal is met; nil if not measured.
    public let check: @Sendable (BenchRun) -> (acb: String, nats: String, ratio: Double?, met: Bool)?

    /// The targets by set: the harness issue's (`make bench`), then the context scenarios'
    /// (``contexts``, `make bench-contexts`). A report lists the sets its run measured.
    public static let sets: [[PerformanceTarget]] = [harness, contexts]

    /// The harness issue's targets. p2p and fan-out are judged in the open shape (``LoadShape/open``).
    static let harness: [PerformanceTarget] = [
        relative("p2p:10", "msgs/s ≥ 1.0× nats-server", \.rate, higherIsBetter: true),
        cpuPerMessage("p2p:10"),
        relative("p2p:100", "msgs/s ≥ 1.0× nats-server", \.rate, higherIsBetter: true),
        cpuPerMessage("p2p:100"),
        relative("topic:100", "deliveries/s (fan-out 1 → 100) ≥ 1.0× nats-server", \.rate, higherIsBetter: true),
        cpuPerMessage("topic:100"),
        cpuPerMessage("broadcast:100"),
        relative("rr:1", "p50 ≤ 1.0× nats-server", { $0.latency?.p50 }, higherIsBetter: false, unit: "µs"),
        relative("rr:1", "p99 ≤ 1.0× nats-server", { $0.latency?.p99 }, higherIsBetter: false, unit: "µs"),
        relative("rr:10", "requests/s ≥ 1.0× nats-server", \.rate, higherIsBetter: true),
        absolute("idle:10000", "server RSS ≤ 10 KiB per agent above baseline") {
            ($0.rate <= 10_240, String(format: "%.0f B/agent", $0.rate))
        },
        absolute("stream:1024", "≥ 500 MB/s through the bus") {
            ($0.rate >= 500, String(format: "%.0f MB/s", $0.rate))
        },
        absolute("stream:1024", "server RSS growth ≤ 64 MiB") {
            let growth = $0.usage?.growth ?? .max
            return (growth <= 64 << 20, String(format: "%.1f MiB", Double(growth) / 1_048_576))
        },
        absolute("storm:16", "≥ 2,000 connections/s with HELLO done") {
            ($0.rate >= 2_000, String(format: "%.0f /s", $0.rate))
        },
        tlsCost("p2p:10", "with TLS msgs/s ≥ 0.75× plain ACB (ratio: TLS/plain)"),
        PerformanceTarget(scenario: "storm:16", goal: "with TLS ≥ 1,000 connections/s with HELLO done") { run in
            guard let tls = run.result("storm:16", on: .acbTLS) else { return nil }
            return (String(format: "%.0f /s", tls.rate), "", nil, tls.rate >= 1_000)
        },
    ]

    /// What TLS costs ACB in `scenario`: its rate with TLS against its rate without.
    private static func tlsCost(_ scenario: String, _ goal: String) -> PerformanceTarget {
        PerformanceTarget(scenario: scenario, goal: goal) { run in
            guard let tls = run.result(scenario, on: .acbTLS), let plain = run.result(scenario, on: .acb),
                plain.rate > 0
            else { return nil }
            let ratio = tls.rate / plain.rate
            return (Report.number(tls.rate), "", ratio, ratio >= 0.75)
        }
    }

    /// What the server spends on each message it delivers, against nats-server's.
    private static func cpuPerMessage(_ scenario: String) -> PerformanceTarget {
        relative(
            scenario, "server CPU per delivered message ≤ 1.2× nats-server", \.serverCPUMicrosPerMessage,
            higherIsBetter: false, bound: 1.2, unit: "µs")
    }

    /// ACB's `figure` against nats-server's: met if their ratio is at least `bound` (`higherIsBetter`)
    /// or at most `bound`.
    static func relative(
        _ scenario: String, _ goal: String, _ figure: @escaping @Sendable (ScenarioResult) -> Double?,
        higherIsBetter: Bool, bound: Double = 1, unit: String = ""
    ) -> PerformanceTarget {
        PerformanceTarget(scenario: scenario, goal: goal) { run in
            guard let acb = run.result(scenario, on: .acb).flatMap(figure),
                let nats = run.result(scenario, on: .nats).flatMap(figure), nats > 0
            else { return nil }
            let ratio = acb / nats
            let text = { (value: Double) in unit.isEmpty ? Report.number(value) : String(format: "%.1f %@", value, unit)
            }
            return (text(acb), text(nats), ratio, higherIsBetter ? ratio >= bound : ratio <= bound)
        }
    }

    static func absolute(
        _ scenario: String, _ goal: String, _ judge: @escaping @Sendable (ScenarioResult) -> (Bool, String)
    ) -> PerformanceTarget {
        PerformanceTarget(scenario: scenario, goal: goal) { run in
            guard let acb = run.result(scenario, on: .acb) else { return nil }
            let (met, text) = judge(acb)
            return (text, "", nil, met)
        }
    }
}
