import Foundation
import FoundationXML
import NIOPosix
import Testing

@testable import BenchKit

/// The load harness counts every message: small runs in count mode against the real servers,
/// checking the counts, never the timing. One at a time, so they do not crowd out the other
/// suites' servers on a two-core machine.
@Suite(.serialized, .timeLimit(.minutes(2))) struct BenchHarnessTests {
    static let messages: UInt64 = 300

    /// Count mode: the time limit is only a backstop (a run ends when every producer is done).
    static func settings(seconds: Double = 60) -> BenchSettings {
        var settings = BenchSettings()
        settings.seconds = seconds
        settings.messageLimit = messages
        settings.window = 64
        return settings
    }

    /// Each scenario with what it must have sent and delivered in count mode.
    static let counted: [(Scenario, sent: UInt64, delivered: UInt64)] = [
        (.p2p(pairs: 2), 2 * messages, 2 * messages),
        (.requestReply(requesters: 2), 2 * messages, 2 * messages),
        (.openLoop(requesters: 1, perSecond: 5_000), messages, messages),
        (.topicFanout(subscribers: 3), messages, 3 * messages),
        (.broadcast(receivers: 3), messages, 3 * messages),
    ]

    @Test(arguments: counted)
    func countsEveryMessageThroughACB(_ scenario: Scenario, sent: UInt64, delivered: UInt64) async throws {
        try await TestBus.with { bus in
            let result = try await Self.run(scenario, on: try await Self.acb(bus))
            Self.expectComplete(result, sent: sent, delivered: delivered)
            #expect(result.unanswered == 0)
        }
    }

    @Test(arguments: counted)
    func countsEveryMessageThroughNATS(_ scenario: Scenario, sent: UInt64, delivered: UInt64) async throws {
        try await NATSServer.with { nats in
            let result = try await Self.run(scenario, on: try await Self.nats(nats))
            Self.expectComplete(result, sent: sent, delivered: delivered)
        }
    }

    @Test func connectionScenariosCountEachAgent() async throws {
        try await TestBus.with { bus in
            let server = try await Self.acb(bus)
            let storm = try await Self.run(.connectStorm(workers: 2), on: server)
            #expect(storm.received == 2 * Self.messages && storm.refused.isEmpty)
            let idle = try await Self.run(.idle(agents: 100), on: server)
            #expect(idle.received == 100 && idle.disconnects.isEmpty && idle.usage != nil)
            let stream = try await Self.run(.stream(mebibytes: 3), on: server)
            #expect(stream.received == 1 && stream.isComplete)
        }
    }

    /// NATS drops a message nobody subscribed to: the harness must say each one was lost. The
    /// producer stalls once its window is out, so the run ends at its time limit.
    @Test func lossIsCountedAndReportedLoudly() async throws {
        try await NATSServer.with { nats in
            let result = try await Self.misaddressed(on: try await Self.nats(nats), seconds: 1)
            #expect(result.sent == 64 && result.lost == 64 && !result.isComplete)
            let run = BenchRun(
                machine: .current(servers: [:]), command: "test", settings: Self.settings(), results: [result])
            #expect(run.incomplete.count == 1)
            #expect(Report.table(run).contains("!!! nats p2p:1: 64 lost of 64 expected"))
        }
    }

    /// ACB refuses a send to an unknown agent: refused, not lost, and the producer carries on.
    @Test func refusalIsNotLoss() async throws {
        try await TestBus.with { bus in
            let result = try await Self.misaddressed(on: try await Self.acb(bus), seconds: 60)
            #expect(result.sent == Self.messages && result.refused == ["unknown_agent": Self.messages])
            #expect(result.lost == 0 && result.isComplete)
        }
    }

    @Test func tallyFindsGapsAndDuplicates() {
        var tally = SequenceTally()
        for sequence: UInt64 in [0, 1, 1, 3, 130] { tally.record(sequence) }
        #expect(tally.unique == 4 && tally.duplicates == 1)
        #expect(tally.missing(below: 5) == 2)
        #expect(tally.missing(below: 131) == 127)
    }

    @Test func chartDrawsOneLinePerServer() throws {
        var latency = LatencyRecorder()
        for micros: UInt64 in [40, 50, 60, 900] { latency.record(nanoseconds: micros * 1_000) }
        let results = ServerUnderTest.Kind.allCases.map { kind in
            var result = ScenarioResult(
                scenario: .requestReply(requesters: 1), server: kind, rate: 1, unit: "x", seconds: 1)
            result.record(latency)
            return result
        }
        let svg = try #require(LatencyChart.svg(title: "rr", results))
        #expect(XMLParser(data: Data(svg.utf8)).parse())
        #expect(svg.components(separatedBy: "<polyline").count == ServerUnderTest.Kind.allCases.count + 1)
    }

    // MARK: fixtures

    static func acb(_ bus: TestBus) async throws -> ServerUnderTest {
        try await ServerUnderTest(
            kind: .acb, host: "127.0.0.1", port: bus.port, pid: getpid(), tokenSecret: TestBus.secret)
    }

    static func nats(_ nats: NATSServer) async throws -> ServerUnderTest {
        try await ServerUnderTest(kind: .nats, host: "127.0.0.1", port: nats.port, pid: nats.pid)
    }

    static func run(_ scenario: Scenario, on server: ServerUnderTest) async throws -> ScenarioResult {
        try await Bench(server: server, settings: settings(), group: MultiThreadedEventLoopGroup.singleton)
            .run(scenario)
    }

    static func expectComplete(
        _ result: ScenarioResult, sent: UInt64, delivered: UInt64, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(result.sent == sent, sourceLocation: sourceLocation)
        #expect(result.expected == delivered && result.received == delivered, sourceLocation: sourceLocation)
        #expect(result.lost == 0 && result.duplicates == 0 && result.refused.isEmpty, sourceLocation: sourceLocation)
        #expect(result.latency != nil, sourceLocation: sourceLocation)
    }

    /// A p2p run whose producer sends to an agent that does not exist.
    static func misaddressed(on server: ServerUnderTest, seconds: Double) async throws -> ScenarioResult {
        let bench = Bench(
            server: server, settings: settings(seconds: seconds), group: MultiThreadedEventLoopGroup.singleton)
        let names = Names(scenario: .p2p(pairs: 1))
        let producer = try await bench.makeProducer("sender", .send(to: "nobody"), fanout: 1, tenant: names.tenant)
        let consumer = try await bench.makeConsumer(
            "receiver", subscriptions: [], for: producer, index: 0, tenant: names.tenant)
        return try await bench.measure(
            .p2p(pairs: 1), [.init(producer: producer, consumers: [consumer])], unit: "msgs/s")
    }
}
