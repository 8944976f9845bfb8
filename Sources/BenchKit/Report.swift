import Foundation

/// The human forms of a run: a table for the terminal and BENCHMARKS.md.
public enum Report {
    /// One line per result, aligned, then each result's note, with losses and disconnects called out.
    public static func table(_ run: BenchRun) -> String {
        var rows = [
            [
                "scenario", "server", "rate", "unit", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "refused",
                "server CPU s", "CPU µs/msg", "harness CPU s", "RSS peak",
            ]
        ]
        for result in run.results {
            rows.append(
                [result.scenario, result.server.rawValue, number(result.rate), result.unit]
                    + latencies(result.latency)
                    + [
                        refusals(result.refused), seconds(result.usage?.serverCPUSeconds),
                        micros(result.serverCPUMicrosPerMessage), seconds(result.usage?.harnessCPUSeconds),
                        mebibytes(result.usage?.peak),
                    ])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        var text = rows.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
        for result in run.results {
            if let note = result.note { text += "\n- \(result.server.rawValue) \(result.scenario): \(note)" }
        }
        for result in run.incomplete {
            text +=
                "\n!!! \(result.server.rawValue) \(result.scenario): \(result.problems) of \(result.expected) expected"
        }
        return text
    }

    /// BENCHMARKS.md: the machine, how to reproduce, the targets, every figure, the charts, then `notes`.
    public static func markdown(_ run: BenchRun, charts: [String: String], notes: String) -> String {
        var lines = [
            "# Benchmarks",
            "",
            "<!-- Written by `make bench` (acb-bench); edit docs/benchmarks-notes.md, not this file. -->",
            "",
            "Measured \(run.date.formatted(.iso8601)) on \(run.machine.cpu), \(run.machine.cores) cores, "
                + String(format: "%.0f GiB, ", run.machine.memoryGiB) + "\(run.machine.system). Servers: "
                + run.machine.servers.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                + ". Both servers and the harness share the machine; \(run.payloadBytes)-byte payloads, "
                + "\(Int(run.seconds)) s per scenario. p2p, topic and broadcast run in two load shapes: open "
                + "(`p2p:10`: each producer writes as fast as its socket takes it, and ACB's within the bus's "
                + "CREDIT), judged in the targets; and window (`p2p:10/window`: at most \(run.window) messages "
                + "ahead of the slowest receiver).",
            "",
            "Reproduce everything with `make bench`, which runs:",
            "",
            "```",
            run.command,
            "```",
            "",
            "## Targets",
            "",
            "| scenario | target | ACB | nats-server | ACB/NATS | met |",
            "|---|---|---|---|---|---|",
        ]
        let measured = PerformanceTarget.sets.filter { set in set.contains { $0.check(run) != nil } }
        for target in measured.joined() {
            guard let check = target.check(run) else {
                lines.append("| \(target.scenario) | \(target.goal) | not measured | | | |")
                continue
            }
            let ratio = check.ratio.map { String(format: "%.2f×", $0) } ?? ""
            lines.append(
                "| \(target.scenario) | \(target.goal) | \(check.acb) | \(check.nats) | \(ratio) | "
                    + (check.met ? "yes" : "**no**") + " |")
        }
        lines += [
            "",
            "## Every figure",
            "",
            "Latency is one-way (sender to receiver) for messages, round trip for requests; µs. Server CPU "
                + "µs/msg is the server's CPU time over what arrived: per message delivered, per reply for "
                + "request/reply, per connection for the connect storm.",
            "",
            "| scenario | server | rate | p50 | p90 | p99 | p99.9 | max | sent | refused | problems "
                + "| server CPU s | server CPU µs/msg | harness CPU s | server RSS peak (growth) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for result in run.results {
            let memory = result.usage.map { "\(mebibytes($0.peak)) (+\(mebibytes($0.growth)))" } ?? "–"
            lines.append(
                "| \(result.title) | \(result.server.rawValue) | \(number(result.rate)) \(result.unit) | "
                    + latencies(result.latency).joined(separator: " | ")
                    + " | \(result.sent) | \(refusals(result.refused)) | \(result.isComplete ? "none" : result.problems) | "
                    + "\(seconds(result.usage?.serverCPUSeconds)) | \(micros(result.serverCPUMicrosPerMessage)) | "
                    + "\(seconds(result.usage?.harnessCPUSeconds)) | \(memory) |")
        }
        let caveats = run.results.compactMap { result in
            result.note.map { "- \(result.server.rawValue) \(result.scenario): \($0)" }
        }
        if !caveats.isEmpty { lines += [""] + caveats }
        if !charts.isEmpty {
            lines += ["", "## Latency distributions", ""]
            for (scenario, path) in charts.sorted(by: { $0.key < $1.key }) {
                lines += ["### \(scenario)", "", "![\(scenario) latency by percentile](\(path))", ""]
            }
        }
        return lines.joined(separator: "\n") + "\n\n" + notes + "\n"
    }

    static func number(_ value: Double) -> String {
        value >= 100 ? Int(value.rounded()).formatted() : String(format: "%.1f", value)
    }

    private static func latencies(_ latency: LatencySummary?) -> [String] {
        [latency?.p50, latency?.p90, latency?.p99, latency?.p999, latency?.max].map(micros)
    }

    private static func refusals(_ refused: [String: UInt64]) -> String {
        refused.isEmpty
            ? "–" : refused.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    private static func seconds(_ value: Double?) -> String {
        value.map { String(format: "%.1f", $0) } ?? "–"
    }

    private static func micros(_ value: Double?) -> String {
        value.map { $0 >= 100 ? String(format: "%.0f", $0) : String(format: "%.1f", $0) } ?? "–"
    }

    private static func mebibytes(_ bytes: UInt64?) -> String {
        bytes.map { String(format: "%.1f MiB", Double($0) / 1_048_576) } ?? "–"
    }
}
