import Actors
import Bus
import Foundation
import FoundationXML
import Gateway
import NIOCore
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

    /// Each scenario with what it must have sent and delivered in count mode; messaging in both shapes.
    static let counted: [(Scenario, sent: UInt64, delivered: UInt64)] = [
        (.p2p(pairs: 2), 2 * messages, 2 * messages),
        (.p2p(pairs: 2, shape: .window), 2 * messages, 2 * messages),
        (.requestReply(requesters: 2), 2 * messages, 2 * messages),
        (.openLoop(requesters: 1, perSecond: 5_000), messages, messages),
        (.topicFanout(subscribers: 3), messages, 3 * messages),
        (.topicFanout(subscribers: 3, shape: .window), messages, 3 * messages),
        (.broadcast(receivers: 3), messages, 3 * messages),
        (.broadcast(receivers: 3, shape: .window), messages, 3 * messages),
        // Sealed payloads count only once they open: a box that did not would be lost.
        (.sealed(.p2p(pairs: 2)), 2 * messages, 2 * messages),
        (.sealed(.requestReply(requesters: 2)), 2 * messages, 2 * messages),
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

    /// The open shape keeps to ACB's CREDIT: with a send window of 64, 300 messages per producer
    /// take several CREDITs. Every send is settled (by CONFIRM: accepted == sent), and each confirmed
    /// message reached every receiver of its producer.
    @Test(arguments: counted.filter { $0.0.shape == .open })
    func openShapeKeepsToTheBusCredit(_ scenario: Scenario, sent: UInt64, delivered: UInt64) async throws {
        try await TestBus.with({ $0.supervisor.sendWindow = 64 }) { bus in
            let result = try await Self.run(scenario, on: try await Self.acb(bus))
            Self.expectComplete(result, sent: sent, delivered: delivered)
            #expect(result.unanswered == 0 && result.isComplete)
        }
    }

    /// Protocol 1, as older revisions of the bus speak it: subscriptions after WELCOME, no credit,
    /// an OK for every send. The window shape paces it; every send is accepted and delivered.
    @Test(arguments: counted.filter { $0.0.shape == .window })
    func windowShapeSpeaksProtocolOne(_ scenario: Scenario, sent: UInt64, delivered: UInt64) async throws {
        try await TestBus.with { bus in
            let result = try await Self.run(scenario, on: try await Self.acb(bus, protocol: 1))
            Self.expectComplete(result, sent: sent, delivered: delivered)
            #expect(result.unanswered == 0 && result.isComplete)
        }
    }

    /// Protocol 2 as the harness's ACB wire counts it: CREDIT adds, each send takes one, an ERROR
    /// gives its send's back; an OK or ERROR answers its send alone, and CONFIRM settles every
    /// earlier send still unanswered, once.
    @Test func protocolTwoAnswersAreCountedOnce() throws {
        var wire = ACBWire(name: "alice", credential: "")
        var out = ByteBuffer()
        func events(_ frame: Frame) throws -> [WireEvent] {
            var input = ByteBuffer()
            frame.encode(into: &input)
            var events: [WireEvent] = []
            try wire.parse(&input, into: &events, out: &out)
            return events
        }
        /// The event `frame` makes, if exactly one.
        func only(_ frame: Frame) throws -> WireEvent? {
            let made = try events(frame)
            return made.count == 1 ? made[0] : nil
        }
        guard case .credited? = try only(.credit(Credit(grant: 4))) else { Issue.record("no credit"); return }
        wire.subscribe("news.*", into: &out)  // ref 1, not a send
        for _ in 0..<4 { wire.send(to: "bob", ByteBuffer(string: "m"), durable: false, into: &out) }  // refs 2 to 5
        #expect(wire.sendCredit == 0)
        let refusal = ErrorFrame(ref: 3, error: BusError(.unknownAgent, "no bob"))
        guard case .refused("unknown_agent")? = try only(.error(refusal)) else { Issue.record("no refusal"); return }
        #expect(wire.sendCredit == 1, "a refused send's credit comes back")
        guard case .accepted(recipients: 1)? = try only(.ok(Ok(ref: 4, outcome: .queued, recipients: 1))) else {
            Issue.record("OK queued is no acceptance"); return
        }
        guard case .synced? = try only(.ok(Ok(ref: 1))) else { Issue.record("subscription not synced"); return }
        guard case .confirmed(2)? = try only(.confirm(RefOnly(ref: 5))) else {
            Issue.record("CONFIRM must settle refs 2 and 5, not 3 or 4"); return
        }
        #expect(try events(.confirm(RefOnly(ref: 5))).isEmpty, "nothing is settled twice")
        _ = try only(.error(ErrorFrame(ref: 2, error: BusError(.internal, "late"))))
        #expect(wire.sendCredit == 1, "an ERROR for a settled send gives nothing back")
    }

    @Test func scenarioNamesCarryTheShape() {
        #expect(Scenario("p2p:10") == Scenario.p2p(pairs: 10, shape: .open))
        #expect(Scenario("topic:100/window") == Scenario.topicFanout(subscribers: 100, shape: .window))
        #expect(Scenario("broadcast:100/window")?.id == "broadcast:100/window")
        #expect(Scenario("rr:1/window") == nil && Scenario("p2p:10/open") == nil)
        for scenario in Scenario.standard + Scenario.sealed { #expect(Scenario(scenario.id) == scenario) }
        #expect(Scenario("sealed-p2p:10/window") == .sealed(.p2p(pairs: 10, shape: .window)))
        #expect(Scenario("sealed-topic:10") == nil && Scenario("sealed-sealed-p2p:1") == nil)
        #expect(Scenario.slug("p2p:10/window") == "p2p-10-window")
    }

    @Test func connectionScenariosCountEachAgent() async throws {
        try await TestBus.with { bus in
            let server = try await Self.acb(bus)
            let storm = try await Self.run(.connectStorm(workers: 2), on: server)
            #expect(storm.received == 2 * Self.messages && storm.refused.isEmpty)
            let idle = try await Self.run(.idle(agents: 100), on: server)
            #expect(idle.received == 100 && idle.disconnects.isEmpty && idle.usage != nil)
            for scenario in [Scenario.stream(mebibytes: 3), .sealed(.stream(mebibytes: 3))] {
                let stream = try await Self.run(scenario, on: server)
                #expect(stream.received == 1 && stream.isComplete, "\(scenario.id)")
            }
        }
    }

    /// NATS drops a message nobody subscribed to: the harness must say each one was lost. In the
    /// window shape the producer stalls once its window is out, so the run ends at its time limit;
    /// in the open shape it sends them all.
    @Test(arguments: LoadShape.allCases)
    func lossIsCountedAndReportedLoudly(_ shape: LoadShape) async throws {
        try await NATSServer.with { nats in
            let result = try await Self.misaddressed(on: try await Self.nats(nats), shape: shape, seconds: 1)
            let sent = shape == .window ? 64 : Self.messages
            #expect(result.sent == sent && result.lost == sent && !result.isComplete)
            let run = BenchRun(
                machine: .current(servers: [:]), command: "test", settings: Self.settings(), results: [result])
            #expect(run.incomplete.count == 1)
            #expect(Report.table(run).contains("!!! nats \(result.scenario): \(sent) lost of \(sent) expected"))
        }
    }

    /// ACB refuses a send to an unknown agent: refused, not lost, and the producer carries on (in
    /// the open shape on the credit each ERROR gives back).
    @Test(arguments: LoadShape.allCases)
    func refusalIsNotLoss(_ shape: LoadShape) async throws {
        try await TestBus.with { bus in
            let result = try await Self.misaddressed(on: try await Self.acb(bus), shape: shape, seconds: 60)
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

    static func acb(_ bus: TestBus, protocol version: UInt16 = 2) async throws -> ServerUnderTest {
        try await ServerUnderTest(
            kind: .acb, host: "127.0.0.1", port: bus.port, pid: getpid(), tokenSecret: TestBus.secret,
            acbProtocol: version)
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
    static func misaddressed(on server: ServerUnderTest, shape: LoadShape, seconds: Double) async throws
        -> ScenarioResult
    {
        let bench = Bench(
            server: server, settings: settings(seconds: seconds), group: MultiThreadedEventLoopGroup.singleton)
        let scenario = Scenario.p2p(pairs: 1, shape: shape)
        let names = Names(scenario: scenario)
        let producer = try await bench.makeProducer(
            "sender", .send(to: "nobody"), shape: shape, fanout: 1, tenant: names.tenant)
        let consumer = try await bench.makeConsumer(
            "receiver", subscriptions: [], for: producer, shape: shape, index: 0, tenant: names.tenant)
        return try await bench.measure(scenario, [.init(producer: producer, consumers: [consumer])], unit: "msgs/s")
    }
}
