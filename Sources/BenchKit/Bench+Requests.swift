/// Request/reply: each requester asks its own responder, closed or open loop.
extension Bench {
    func requestReply(_ scenario: Scenario, requesters: Int, pace: Requester.Pace, names: Names)
        async throws -> ScenarioResult
    {
        var pairs: [(requester: Agent<Requester>, responder: Agent<Responder>)] = []
        let (limit, bytes) = (settings.messageLimit, settings.payloadBytes)
        for index in 0..<requesters {
            let name = names.agent("responder", index)
            let responder = try await server.connect(name: name, tenant: names.tenant, group: group) { Responder() }
            let requester = try await server.connect(
                name: names.agent("requester", index), tenant: names.tenant, group: group
            ) { Requester(responder: name, pace: pace, limit: limit, payloadBytes: bytes) }
            pairs.append((requester, responder))
        }
        func answered() async throws -> UInt64 {
            var total: UInt64 = 0
            for pair in pairs { total += try await pair.requester.run { $0.counts.accepted + $0.counts.refusedTotal } }
            return total
        }
        let memory = MemorySampler(pid: server.pid)
        let started = ContinuousClock.now
        for pair in pairs { try await pair.requester.run { $0.start() } }
        try await timed(scenario) { (try await answered(), "requests/s") }
        var sent: UInt64 = 0
        for pair in pairs { sent += try await pair.requester.run { $0.stop().sent } }
        _ = try await drain(to: sent, answered)
        let elapsed = started.duration(to: .now)

        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: 0, unit: "requests/s", seconds: elapsed.seconds)
        var latency = LatencyRecorder()
        var skipped: UInt64 = 0
        for pair in pairs {
            let (counts, tally, recorded, behind) = try await pair.requester.run {
                ($0.counts, $0.tally, $0.latency, $0.skipped)
            }
            result.sent += counts.sent
            result.expected += counts.sent - counts.refusedTotal
            result.received += tally.unique
            result.duplicates += tally.duplicates
            result.refused.merge(counts.refused, uniquingKeysWith: +)
            let missing = tally.missing(below: counts.sent)
            result.lost += missing > counts.refusedTotal ? missing - counts.refusedTotal : 0
            latency.add(recorded)
            skipped += behind
        }
        result.rate = Double(result.received) / elapsed.seconds
        result.record(latency)
        result.memory = await memory?.stop()
        if skipped > 0 { result.note = "\(skipped) due requests skipped: \(Requester.maxOutstanding) were in flight" }
        for pair in pairs {
            await pair.requester.close()
            await pair.responder.close()
        }
        return result
    }
}
