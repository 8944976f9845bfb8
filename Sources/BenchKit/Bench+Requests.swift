import ACBClient

/// Request/reply: each requester asks its own responder, closed or open loop.
extension Bench {
    /// `sealed`: each pair with keys of its own, requests and replies boxes.
    func requestReply(
        _ scenario: Scenario, requesters: Int, pace: SendLoop.Pace, sealed: Bool = false, names: Names
    ) async throws -> ScenarioResult {
        var requesterAgents: [Agent<Requester>] = []
        var responders: [Agent<Responder>] = []
        let (limit, bytes) = (settings.messageLimit, settings.payloadBytes)
        for index in 0..<requesters {
            let name = names.agent("responder", index)
            let (asker, answerer) = sealed ? BoxSealer.pair() : (nil, nil)
            responders.append(
                try await server.connect(name: name, tenant: names.tenant, group: group) { Responder(sealer: answerer) }
            )
            requesterAgents.append(
                try await server.connect(name: names.agent("requester", index), tenant: names.tenant, group: group) {
                    Requester(responder: name, pace: pace, limit: limit, payloadBytes: bytes, sealer: asker)
                })
        }
        func counts() async throws -> [SendCounts] {
            var counts: [SendCounts] = []
            for requester in requesterAgents { counts.append(try await requester.run { $0.counts }) }
            return counts
        }
        func answered() async throws -> UInt64 {
            try await counts().reduce(0) { $0 + $1.accepted + $1.refusedTotal }
        }
        let usage = ServerSampler(pid: server.pid)
        let started = Stamp.now()
        for requester in requesterAgents { try await requester.run { $0.start() } }
        try await timed(
            scenario,
            isDone: {
                var done = true
                for requester in requesterAgents { done = try await requester.run { $0.isDone } && done }
                return done
            },
            progress: { (try await answered(), "requests/s") })
        var sent: UInt64 = 0
        for requester in requesterAgents { sent += try await requester.run { $0.stop().sent } }
        try await drain(to: sent, answered)
        var lastArrival: UInt64 = 0
        for requester in requesterAgents { lastArrival = max(lastArrival, try await requester.run { $0.lastArrival }) }
        let seconds = Self.seconds(from: started, to: lastArrival)

        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: 0, unit: "requests/s", seconds: seconds)
        var latency = LatencyRecorder()
        for requester in requesterAgents {
            let (counts, tally, recorded, skipped) = try await requester.run {
                ($0.counts, $0.tally, $0.latency, $0.skipped)
            }
            result.sent += counts.sent
            result.expected += counts.sent.minus(counts.refusedTotal)
            result.received += tally.unique
            result.duplicates += tally.duplicates
            result.refused.merge(counts.refused, uniquingKeysWith: +)
            result.lost += tally.missing(below: counts.sent).minus(counts.refusedTotal)
            result.skipped += skipped
            latency.add(recorded)
        }
        try await finish(
            &result, seconds: seconds, latency: latency, usage: usage, agents: requesterAgents, responders)
        return result
    }
}
