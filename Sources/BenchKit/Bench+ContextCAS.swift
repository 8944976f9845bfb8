import NIOCore

/// `ctx-cas:W`: writers increment one counter by compare-and-swap; at the end the counter must hold
/// exactly the increments the server committed ("lost updates: 0").
extension Bench {
    func contextCAS(_ scenario: Scenario, writers: Int, bucket: String, names: Names)
        async throws -> ScenarioResult
    {
        let key = ContextKey(bucket: bucket, name: "bench.counter")
        let writerNames = (0..<writers).map { names.agent("w", $0) }
        try await seed([.create(key, ContextStamp.counter(0), writers: writerNames)], bucket: bucket, names: names)
        let limit = settings.messageLimit
        var writerAgents: [Agent<CounterWriter>] = []
        for name in writerNames {
            writerAgents.append(
                try await server.connect(name: name, tenant: names.tenant, group: group) {
                    CounterWriter(key: key, limit: limit)
                })
        }
        func increments() async throws -> UInt64 {
            var total: UInt64 = 0
            for writer in writerAgents { total += try await writer.run { $0.increments } }
            return total
        }

        let usage = ServerSampler(pid: server.pid)
        let started = Stamp.now()
        for writer in writerAgents { try await writer.run { $0.start() } }
        try await timed(
            scenario, isDone: { try await self.howMany(writerAgents) { $0.isDone } == writers },
            progress: { (try await increments(), "increments/s") })
        for writer in writerAgents { try await writer.run { $0.stop() } }
        // A write under way when time was up may still commit: it counts once its answer is in.
        try await drain(to: UInt64(writers)) { try await UInt64(self.howMany(writerAgents) { $0.isIdle }) }
        let idle = try await howMany(writerAgents) { $0.isIdle }
        let (latency, lastArrival) = try await latencies(writerAgents) { ($0.latency, $0.lastArrival) }
        let seconds = Self.seconds(from: started, to: lastArrival)
        let final = try await steps([.get(key)], role: "check", names: names)[0]
        guard let value = ContextStamp.counterValue(final.body) else {
            throw WireError("\(server.kind.rawValue): the counter's last version does not hold a counter")
        }

        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: 0, unit: "increments/s", seconds: seconds)
        var committed: UInt64 = 0
        for writer in writerAgents {
            let (made, conflicts, refused) = try await writer.run { ($0.increments, $0.conflicts, $0.refused) }
            committed += made
            result.sent += made + conflicts
            result.refused["version_conflict", default: 0] += conflicts
            result.refused.merge(refused, uniquingKeysWith: +)
        }
        // The counter started at 0: it must have gained exactly what was committed, no more, no less.
        result.expected = committed
        result.received = value
        result.lost = committed.minus(value) + value.minus(committed)
        result.unanswered = UInt64(writers - idle)
        result.note =
            "lost updates: \(result.lost) (final value \(value), \(committed) compare-and-swaps committed, "
            + "\(result.refused["version_conflict"] ?? 0) conflicts retried)"
        try await finish(&result, seconds: seconds, latency: latency, usage: usage, agents: writerAgents)
        result.rate = Double(committed) / seconds
        return result
    }
}
