/// Connect storms and idle agents: what connections cost the server.
extension Bench {
    /// Workers connect, wait for the handshake, and close, as fast as they can.
    func connectStorm(_ scenario: Scenario, workers: Int, names: Names) async throws -> ScenarioResult {
        // Tokens are signed before the clock starts so the harness measures the server, not its own signing.
        let perWorker = 32
        var credentials: [[String]] = []
        for worker in 0..<workers {
            var mine: [String] = []
            for slot in 0..<perWorker {
                mine.append(try await server.credential(name: names.agent("w\(worker)-", slot), tenant: names.tenant))
            }
            credentials.append(mine)
        }
        let usage = ServerSampler(pid: server.pid)
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int(settings.seconds * 1_000))
        let (server, group, limit) = (self.server, self.group, settings.messageLimit)
        let counts = try await withThrowingTaskGroup(of: (done: UInt64, failed: [String: UInt64]).self) { tasks in
            for (worker, mine) in credentials.enumerated() {
                tasks.addTask {
                    var done: UInt64 = 0
                    var failed: [String: UInt64] = [:]
                    while ContinuousClock.now < deadline && done < limit {
                        let slot = Int(done) % perWorker
                        do {
                            let agent = try await server.connect(
                                name: names.agent("w\(worker)-", slot), credential: mine[slot], group: group
                            ) { Bystander() }
                            await agent.close()
                            done += 1
                        } catch {
                            failed["\(error)", default: 0] += 1
                        }
                    }
                    return (done, failed)
                }
            }
            return try await tasks.reduce(into: (done: UInt64(0), failed: [String: UInt64]())) {
                $0.done += $1.done
                $0.failed.merge($1.failed, uniquingKeysWith: +)
            }
        }
        let seconds = started.duration(to: .now).seconds
        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: Double(counts.done) / seconds, unit: "connections/s",
            seconds: seconds)
        result.sent = counts.done + counts.failed.values.reduce(0, +)
        result.expected = result.sent
        result.received = counts.done
        // A connection that failed got no answer: the run fails, with the reasons.
        result.disconnects = counts.failed
        result.usage = await usage?.stop()
        return result
    }

    /// Connects `agents` agents that only heartbeat, and reports the server's memory per agent
    /// above its baseline, with every one of them still connected.
    func idle(_ scenario: Scenario, agents: Int, names: Names) async throws -> ScenarioResult {
        let usage = ServerSampler(pid: server.pid)
        let started = ContinuousClock.now
        var connected: [Agent<Bystander>] = []
        let batch = 64
        for first in stride(from: 0, to: agents, by: batch) {
            let (server, group) = (self.server, self.group)
            connected += try await withThrowingTaskGroup(of: Agent<Bystander>.self) { tasks in
                for index in first..<min(first + batch, agents) {
                    tasks.addTask {
                        try await server.connect(name: names.agent("idle", index), tenant: names.tenant, group: group) {
                            Bystander()
                        }
                    }
                }
                return try await tasks.reduce(into: []) { $0.append($1) }
            }
            if first % 1_000 == 0 {
                settings.progress?("[\(server.kind.rawValue) \(scenario.id)] \(connected.count) agents connected")
            }
        }
        let seconds = started.duration(to: .now).seconds
        try await Task.sleep(for: .seconds(1))
        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: 0, unit: "bytes/agent", seconds: seconds)
        result.sent = UInt64(agents)
        result.expected = UInt64(agents)
        result.disconnects = try await disconnects(connected)
        result.received = UInt64(agents) - result.disconnects.values.reduce(0, +)
        if let use = await usage?.stop() {
            result.usage = use
            result.rate = Double(use.retained) / Double(agents)
        }
        for agent in connected { await agent.close() }
        return result
    }
}
