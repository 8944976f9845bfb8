import Foundation
public import NIOCore

/// Runs scenarios against one server.
public struct Bench: Sendable {
    public let server: ServerUnderTest
    public let settings: BenchSettings
    let group: any EventLoopGroup

    public init(server: ServerUnderTest, settings: BenchSettings, group: any EventLoopGroup) {
        self.server = server
        self.settings = settings
        self.group = group
    }

    public func run(_ scenario: Scenario) async throws -> ScenarioResult {
        let names = Names(scenario: scenario)
        switch scenario {
        case .p2p(let pairs, let shape): return try await p2p(scenario, pairs: pairs, shape: shape, names: names)
        case .topicFanout(let receivers, let shape), .broadcast(let receivers, let shape):
            return try await fanout(scenario, receivers: receivers, shape: shape, names: names)
        case .requestReply(let requesters):
            return try await requestReply(scenario, requesters: requesters, pace: .closedLoop, names: names)
        case .openLoop(let requesters, let rate):
            let pace = SendLoop.Pace.openLoop(
                perSecond: Double(rate) / Double(requesters), maxOutstanding: Requester.maxOutstanding)
            return try await requestReply(scenario, requesters: requesters, pace: pace, names: names)
        case .connectStorm(let workers): return try await connectStorm(scenario, workers: workers, names: names)
        case .idle(let agents): return try await idle(scenario, agents: agents, names: names)
        case .durable(let senders, false): return try await durable(scenario, senders: senders, names: names)
        case .durable(let pairs, true):
            return try await p2p(scenario, pairs: pairs, shape: .window, durable: true, names: names)
        case .stream(let mebibytes): return try await stream(scenario, bytes: UInt64(mebibytes) << 20, names: names)
        case .context(let context): return try await contexts(scenario, context, names: names)
        case .sealed(.p2p(let pairs, let shape)):
            return try await p2p(scenario, pairs: pairs, shape: shape, sealed: true, names: names)
        case .sealed(.requestReply(let requesters)):
            return try await requestReply(
                scenario, requesters: requesters, pace: .closedLoop, sealed: true, names: names)
        case .sealed(.stream(let mebibytes)):
            return try await stream(scenario, bytes: UInt64(mebibytes) << 20, sealed: true, names: names)
        case .sealed: throw WireError("only p2p, rr and stream run sealed")
        }
    }

    /// Waits `settings.seconds`, reporting progress each second; in count mode (a message limit)
    /// returns as soon as `isDone` says every producer sent its last message.
    func timed(
        _ scenario: Scenario, isDone: @escaping () async throws -> Bool,
        progress: @escaping () async throws -> (count: UInt64, unit: String)
    ) async throws {
        let started = Date()
        let counted = settings.messageLimit != .max
        var reported = started
        while Date().timeIntervalSince(started) < settings.seconds {
            try await Task.sleep(for: .milliseconds(counted ? 20 : 100))
            if counted, try await isDone() { return }
            guard Date().timeIntervalSince(reported) >= 1 else { continue }
            reported = Date()
            let (count, unit) = try await progress()
            let elapsed = reported.timeIntervalSince(started)
            settings.progress?(
                "[\(server.kind.rawValue) \(scenario.id)] \(String(format: "%4.1f", elapsed)) s  "
                    + "\(Int(Double(count) / elapsed)) \(unit)")
        }
    }

    /// How many agents were disconnected or told off by the server during the run, by reason.
    func disconnects<each B: Behaviour>(_ agents: repeat [Agent<each B>]) async throws -> [String: UInt64] {
        var reasons: [String: UInt64] = [:]
        for group in repeat each agents {
            for agent in group {
                if let reason = try await agent.disconnect() { reasons[reason, default: 0] += 1 }
            }
        }
        return reasons
    }

    /// Completes a message or request result: the rate of what arrived over `seconds`, the
    /// latencies, who was disconnected and what the server used; then closes every agent.
    func finish<each B: Behaviour>(
        _ result: inout ScenarioResult, seconds: Double, latency: LatencyRecorder, usage: ServerSampler?,
        agents: repeat [Agent<each B>]
    ) async throws {
        result.rate = Double(result.received) / seconds
        result.record(latency)
        result.disconnects = try await disconnects(repeat each agents)
        result.usage = await usage?.stop()
        for group in repeat each agents {
            for agent in group { await agent.close() }
        }
    }

    /// Waits until `count` reaches `target`, or stops moving for two seconds.
    func drain(to target: UInt64, _ count: () async throws -> UInt64) async throws {
        var last = try await count()
        var moved = ContinuousClock.now
        while last < target && moved.duration(to: .now) < .seconds(2) {
            try await Task.sleep(for: .milliseconds(10))
            let now = try await count()
            if now != last { moved = .now }
            last = now
        }
    }

    /// Seconds from `started` to the last arrival (both ``Stamp/now()``), so the time spent
    /// waiting for stragglers that never came does not count; until now if nothing arrived.
    static func seconds(from started: UInt64, to lastArrival: UInt64) -> Double {
        Double((lastArrival > started ? lastArrival : Stamp.now()) - started) / 1e9
    }
}

/// Unique agent names, tenant and topic of one scenario run.
struct Names {
    let tenant: String
    private let slug: String

    init(scenario: Scenario) {
        slug = Scenario.slug(scenario.id)
        tenant = "bench-\(slug)-\(UInt32.random(in: 0...UInt32.max))"
    }

    func agent(_ role: String, _ index: Int) -> String { "\(slug)-\(role)\(index)" }
    var topic: String { "fan.\(slug).x" }
    /// Two patterns matching ``topic``, one with each wildcard.
    func pattern(_ index: Int) -> String { index.isMultiple(of: 2) ? "fan.*.x" : "fan.\(slug).>" }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
