import ACBClient
import Bus
import NIOConcurrencyHelpers
import NIOCore

/// durable:N: sends to offline agents, each stored in PostgreSQL before the sender hears "queued".
extension Bench {
    func durable(_ scenario: Scenario, senders: Int, names: Names) async throws -> ScenarioResult {
        var receivers: [String] = []
        for index in 0..<senders {
            let receiver = names.agent("r", index)
            try await registerOffline(receiver, tenant: names.tenant)
            receivers.append(receiver)
        }
        var producers: [Agent<Producer>] = []
        for (index, receiver) in receivers.enumerated() {
            producers.append(
                try await makeProducer(
                    names.agent("s", index), .send(to: receiver), shape: .window, fanout: 0, tenant: names.tenant))
        }
        func counts() async throws -> SendCounts {
            var total = SendCounts()
            for producer in producers {
                let counts = try await producer.run { $0.counts }
                total.sent += counts.sent
                total.accepted += counts.accepted
                total.refused.merge(counts.refused, uniquingKeysWith: +)
            }
            return total
        }
        let usage = ServerSampler(pid: server.pid)
        let started = Stamp.now()
        for producer in producers { try await producer.run { $0.start() } }
        try await timed(
            scenario, isDone: { try await counts().sent >= self.settings.messageLimit * UInt64(senders) },
            progress: { (try await counts().accepted, "queued") })
        for producer in producers { _ = try await producer.run { $0.stop() } }
        let sent = try await counts().sent
        try await drain(to: sent) {
            let counts = try await counts(); return counts.accepted + counts.refusedTotal
        }
        let seconds = Self.seconds(from: started, to: Stamp.now())
        let final = try await counts()

        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: 0, unit: "queued/s", seconds: seconds)
        result.sent = final.sent
        result.refused = final.refused
        result.unanswered = final.unanswered
        result.expected = final.accepted
        var accepted: [UInt64] = []
        for producer in producers { accepted.append(try await producer.run { $0.counts.accepted }) }
        // The senders are done: closed before the backlogs are read, which can take longer than the
        // bus waits for a silent agent's heartbeat.
        let disconnects = try await disconnects(producers)
        for producer in producers { await producer.close() }
        // Nothing the bus said it stored may be missing: each receiver connects and takes its backlog.
        for (receiver, accepted) in zip(receivers, accepted) {
            result.received += try await takeBacklog(of: receiver, tenant: names.tenant, expected: accepted)
        }
        result.lost = result.expected.minus(result.received)
        try await finish(
            &result, seconds: seconds, latency: LatencyRecorder(), usage: usage, agents: [Agent<Producer>]())
        result.disconnects = disconnects
        result.rate = Double(final.accepted) / seconds
        return result
    }

    /// Registers `agent` and disconnects it; returns once the bus has it offline.
    private func registerOffline(_ agent: String, tenant: String) async throws {
        let client = try await acbClient(agent, tenant: tenant)
        try await client.register(AgentDescription(agentType: "bench-sink", capabilities: []))
        await client.close()
        let observer = try await acbClient("\(agent)-observer", tenant: tenant)
        while try await !observer.discover(status: .offline).agents.contains(where: { $0.agentID == agent }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        await observer.close()
    }

    /// Connects `agent` and acknowledges its backlog until `expected` arrived or 2 s pass without one.
    private func takeBacklog(of agent: String, tenant: String, expected: UInt64) async throws -> UInt64 {
        let client = try await acbClient(agent, tenant: tenant)
        let received = NIOLockedValueBox<UInt64>(0)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await delivery in client.deliveries {
                    delivery.ack()
                    if received.withLockedValue({
                        $0 += 1; return $0
                    }) == expected {
                        return
                    }
                }
            }
            // Bounded by silence, so a loss shows as a shortfall instead of a hang.
            tasks.addTask {
                var last = UInt64.max
                while case let now = received.withLockedValue({ $0 }), now != last {
                    last = now
                    try await Task.sleep(for: .seconds(2))
                }
            }
            try await tasks.next()
            tasks.cancelAll()
        }
        await client.close()
        return received.withLockedValue { $0 }
    }

    private func acbClient(_ agent: String, tenant: String) async throws -> ACBClient {
        let configuration = ClientConfiguration(
            host: server.host, port: server.port, token: try await server.credential(name: agent, tenant: tenant),
            clientName: "acb-bench")
        return try await ACBClient.connect(configuration)
    }
}
