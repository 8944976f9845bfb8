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
        case .p2p(let pairs): return try await p2p(scenario, pairs: pairs, names: names)
        case .topicFanout(let subscribers): return try await fanout(scenario, receivers: subscribers, names: names)
        case .broadcast(let receivers): return try await fanout(scenario, receivers: receivers, names: names)
        case .requestReply(let requesters):
            return try await requestReply(scenario, requesters: requesters, pace: .closedLoop, names: names)
        case .openLoop(let requesters, let rate):
            let pace = Requester.Pace.openLoop(perSecond: Double(rate) / Double(requesters))
            return try await requestReply(scenario, requesters: requesters, pace: pace, names: names)
        case .connectStorm(let workers): return try await connectStorm(scenario, workers: workers, names: names)
        case .idle(let agents): return try await idle(scenario, agents: agents, names: names)
        case .stream(let mebibytes): return try await stream(scenario, bytes: UInt64(mebibytes) << 20, names: names)
        }
    }

    /// Waits `settings.seconds`, reporting progress each second; in count mode (a message limit)
    /// returns early once `progress` stops moving.
    func timed(_ scenario: Scenario, progress: @escaping () async throws -> (count: UInt64, unit: String))
        async throws
    {
        let started = Date()
        var last: UInt64 = 0
        let counted = settings.messageLimit != .max
        while Date().timeIntervalSince(started) < settings.seconds {
            try await Task.sleep(for: .milliseconds(counted ? 100 : min(1_000, Int(settings.seconds * 1_000))))
            let (count, unit) = try await progress()
            if counted && count == last { return }
            let elapsed = Date().timeIntervalSince(started)
            settings.progress?(
                "[\(server.kind.rawValue) \(scenario.id)] \(String(format: "%4.1f", elapsed)) s  "
                    + "\(Int(Double(count) / elapsed)) \(unit)")
            last = count
        }
    }

    /// Waits until `count` reaches `target`, or stops moving for two seconds; returns when it ended.
    func drain(to target: UInt64, _ count: () async throws -> UInt64) async throws -> Date {
        var last = try await count()
        var still = Date()
        while last < target && Date().timeIntervalSince(still) < 2 {
            try await Task.sleep(for: .milliseconds(20))
            let now = try await count()
            if now != last { still = Date() }
            last = now
        }
        return last < target ? still : Date()
    }
}

/// Unique agent names, tenant and topic of one scenario run.
struct Names {
    let tenant: String
    private let slug: String

    init(scenario: Scenario) {
        slug = scenario.id.replacingOccurrences(of: ":", with: "-")
        tenant = "bench-\(slug)-\(UInt32.random(in: 0...UInt32.max))"
    }

    func agent(_ role: String, _ index: Int) -> String { "\(slug)-\(role)\(index)" }
    var topic: String { "fan.\(slug).x" }
    /// Two patterns matching ``topic``, one with each wildcard.
    func pattern(_ index: Int) -> String { index.isMultiple(of: 2) ? "fan.*.x" : "fan.\(slug).>" }
}
