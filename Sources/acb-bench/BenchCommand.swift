import ACBTLS
import ArgumentParser
import BenchKit
import Foundation
import NIOCore
import NIOPosix

/// `acb-bench`: runs the load scenarios against ACB and, when given, nats-server, and reports.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acb-bench",
        abstract: "ACB's load harness: the same scenarios against ACB and nats-server, side by side.",
        discussion:
            "Exits 1 if any scenario lost, duplicated, left unanswered or skipped a message, or had an agent disconnected."
    )

    @Option(help: "ACB's agent port, as host:port.") var acb = "127.0.0.1:7480"
    @Option(help: "ACB's process id, to sample its memory and CPU time.") var acbPid: Int32?
    @Option(
        help:
            "Another node of --acb's cluster, as host:port (repeatable): agents connect to --acb and these in turn."
    )
    var acbNode: [String] = []
    @Option(help: "Secret of ACB's agent tokens (else ACB_TOKEN_SECRET).") var tokenSecret: String?
    @Option(
        help:
            "ACB's wire protocol version, 1 or 2. Version 1 (older revisions of the bus speak only it) has no CREDIT, so it runs only /window scenarios."
    )
    var acbProtocol: UInt16 = 2
    @Option(help: "A second ACB with TLS on, as host:port: its cost is measured beside plain ACB.") var acbTls: String?
    @Option(help: "That ACB's process id, to sample its memory and CPU time.") var acbTlsPid: Int32?
    @Option(help: "PEM CA file that --acb-tls's certificate chains to.") var tlsCa: String?
    @Option(help: "nats-server's client port, as host:port; without it only ACB is measured.") var nats: String?
    @Option(help: "nats-server's process id, to sample its memory and CPU time.") var natsPid: Int32?
    @Option(
        help:
            "Comma-separated scenarios: p2p:N, rr:N, rr-open:N:RATE, topic:N, broadcast:N, stream:MIB, storm:N, idle:N, ctx-put:N, ctx-get:N, ctx-watch:N, ctx-cas:N, or the set `contexts` (all four). p2p, topic and broadcast run in the open shape (each producer writes as fast as its socket takes it, within ACB's CREDIT); add /window (p2p:10/window) for the window shape (--window messages ahead of the slowest receiver). Default: all of make bench, both shapes."
    )
    var scenarios: String?
    @Option(help: "Measure the audit pipeline alone: this many events into --kafka-brokers, then exit.")
    var auditEvents: Int?
    @Option(help: "Kafka bootstrap servers, for --audit-events.") var kafkaBrokers: String?
    @Option(
        help:
            "Compare the two shapes of a persistence writer (thread and lock, actor on a thread executor): this many submissions from 10 threads, with commits of 0 and 1,000 µs, then exit."
    )
    var writerQueue: Int?
    @Option(
        help:
            "Measure a cluster's recovery from a node's death: 10 receivers on --acb (the node of process PID, which is killed with SIGKILL), a sender on the first --acb-node; then exit."
    )
    var failoverKill: Int32?
    @Option(help: "Seconds each timed scenario sends.") var seconds = 5.0
    @Option(help: "Payload bytes per message.") var payload = 256
    @Option(help: "Messages each producer of a /window scenario may have in flight.") var window = 1_000
    @Option(help: "Stop each producer after this many messages (and wait for all of them).") var messages: UInt64?
    @Option(help: "Event-loop threads of the harness.") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Write the results as JSON to this file.") var json: String?
    @Option(help: "Write BENCHMARKS.md to this file, charts to --charts.") var markdown: String?
    @Option(help: "Folder of the SVG charts, relative to the markdown file.") var charts = "docs/bench"
    @Option(help: "Hand-written analysis appended to the markdown.") var notes = "docs/benchmarks-notes.md"
    @Option(help: "The command recorded as reproducing this run.") var command = "acb-bench"
    @Option(help: "A server's version for the report, as name=version (repeatable).") var version: [String] = []

    func run() async throws {
        if let writerQueue {
            // On a thread of its own: the actor design needs every thread of the cooperative pool.
            let report = await withCheckedContinuation { done in
                Thread.detachNewThread {
                    done.resume(
                        returning: [0, 1_000].map { commitMicros in
                            "commits of \(commitMicros) µs:\n"
                                + WriterQueueBench.run(items: writerQueue, producers: 10, commitMicros: commitMicros)
                                .map { "  \($0)" }.joined(separator: "\n")
                        }.joined(separator: "\n"))
                }
            }
            print(report)
            return
        }
        if let failoverKill {
            guard let secret = tokenSecret ?? ProcessInfo.processInfo.environment["ACB_TOKEN_SECRET"] else {
                throw ValidationError("--failover-kill needs --token-secret or ACB_TOKEN_SECRET")
            }
            print(
                try await FailoverBench.run(
                    victim: try Self.address(acb), pid: failoverKill, others: try acbNode.map(Self.address),
                    secret: secret, receivers: 10))
            return
        }
        if let auditEvents {
            guard let brokers = kafkaBrokers else { throw ValidationError("--audit-events needs --kafka-brokers") }
            let journal = NSTemporaryDirectory() + "acb-bench-audit-\(getpid())"
            print(try await AuditPipelineBench.run(brokers: brokers, events: auditEvents, journal: journal))
            return
        }
        let plan =
            try scenarios.map { list in
                guard let plan = Scenario.list(list) else { throw ValidationError("unknown scenario in '\(list)'") }
                return plan
            } ?? Scenario.standard
        guard acbProtocol == 1 || acbProtocol == 2 else { throw ValidationError("--acb-protocol is 1 or 2") }
        if acbProtocol == 1, let open = plan.first(where: { $0.shape == .open }) {
            throw ValidationError(
                "\(open.id) runs in the open shape, which protocol 1 cannot pace: it has no CREDIT, so nothing "
                    + "would bound what the bus queues. With --acb-protocol 1 use window-shape scenarios "
                    + "(\(open.id)/window) and name them with --scenarios.")
        }
        var settings = BenchSettings()
        settings.seconds = seconds
        settings.payloadBytes = payload
        settings.window = window
        settings.messageLimit = messages ?? .max
        settings.progress = { line in FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8)) }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        var servers = [
            try await Self.server(
                .acb, acb, otherNodes: try acbNode.map(Self.address), pid: acbPid, secret: tokenSecret,
                acbProtocol: acbProtocol)
        ]
        if let acbTls {
            guard let tlsCa else { throw ValidationError("--acb-tls needs --tls-ca") }
            let tls = try TLSContext.client(TLSConfiguration(trustRoots: tlsCa))
            servers.append(
                try await Self.server(
                    .acbTLS, acbTls, pid: acbTlsPid, secret: tokenSecret, tls: tls, acbProtocol: acbProtocol))
        }
        if let nats { servers.append(try await Self.server(.nats, nats, pid: natsPid, secret: nil)) }
        var results: [ScenarioResult] = []
        for scenario in plan {
            for server in servers where scenario.runs(on: server.kind) {
                let result = try await Bench(server: server, settings: settings, group: group).run(scenario)
                FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
                print(
                    "\(server.kind.rawValue) \(scenario.id): \(Int(result.rate)) \(result.unit)"
                        + (result.isComplete ? "" : "  !!! \(result.problems)"))
                results.append(result)
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        try await group.shutdownGracefully()

        let versions = Dictionary(
            version.compactMap { pair -> (String, String)? in
                let parts = pair.split(separator: "=", maxSplits: 1)
                return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
            }, uniquingKeysWith: { $1 })
        let run = BenchRun(machine: .current(servers: versions), command: command, settings: settings, results: results)
        print("\n" + Report.table(run))
        if let json { try Self.write(try Self.encoder.encode(run), to: json) }
        if let markdown { try writeMarkdown(run, to: markdown) }
        if !run.incomplete.isEmpty {
            print("acb-bench: a run was incomplete (see !!! above)")
            throw ExitCode(1)
        }
    }

    private func writeMarkdown(_ run: BenchRun, to path: String) throws {
        let root = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent(charts), withIntermediateDirectories: true)
        var written: [String: String] = [:]
        for scenario in Set(run.results.map(\.scenario)) {
            let results = run.results.filter { $0.scenario == scenario }
            guard let svg = LatencyChart.svg(title: results[0].title, results) else { continue }
            let file = charts + "/" + Scenario.slug(scenario) + ".svg"
            try Self.write(Data(svg.utf8), to: root.appendingPathComponent(file).path)
            written[results[0].title] = file
        }
        let analysis = (try? String(contentsOfFile: notes, encoding: .utf8)) ?? ""
        try Self.write(Data(Report.markdown(run, charts: written, notes: analysis).utf8), to: path)
    }

    private static func server(
        _ kind: ServerUnderTest.Kind, _ address: String, otherNodes: [(host: String, port: Int)] = [], pid: Int32?,
        secret: String?, tls: TLSContext? = nil, acbProtocol: UInt16 = 2
    ) async throws -> ServerUnderTest {
        let (host, port) = try Self.address(address)
        let secret = secret ?? ProcessInfo.processInfo.environment["ACB_TOKEN_SECRET"]
        return try await ServerUnderTest(
            kind: kind, host: host, port: port, otherNodes: otherNodes, pid: pid, tokenSecret: secret, tls: tls,
            acbProtocol: acbProtocol)
    }

    private static func address(_ address: String) throws -> (host: String, port: Int) {
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("'\(address)' is not host:port") }
        return (String(parts[0]), port)
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    private static func write(_ data: Data, to path: String) throws {
        try data.write(to: URL(fileURLWithPath: path))
    }
}
