import NIOCore

/// p2p, topic fan-out and broadcast: producers stream to consumers under a credit window.
extension Bench {
    func p2p(_ scenario: Scenario, pairs: Int, names: Names) async throws -> ScenarioResult {
        var flows: [Flow] = []
        for index in 0..<pairs {
            let receiver = names.agent("r", index)
            let producer = try await makeProducer(
                names.agent("s", index), .send(to: receiver), fanout: 1, tenant: names.tenant)
            let consumer = try await makeConsumer(
                receiver, subscriptions: [], for: producer, index: 0, tenant: names.tenant)
            flows.append(Flow(producer: producer, consumers: [consumer]))
        }
        return try await measure(scenario, flows, unit: "msgs/s")
    }

    func fanout(_ scenario: Scenario, receivers: Int, names: Names) async throws -> ScenarioResult {
        let isTopic = if case .topicFanout = scenario { true } else { false }
        let producer = try await makeProducer(
            names.agent("p", 0), isTopic ? .publish(topic: names.topic) : .broadcast, fanout: receivers,
            tenant: names.tenant)
        var consumers: [Agent<Consumer>] = []
        for index in 0..<receivers {
            consumers.append(
                try await makeConsumer(
                    names.agent("c", index), subscriptions: isTopic ? [names.pattern(index)] : [], for: producer,
                    index: index, tenant: names.tenant))
        }
        return try await measure(scenario, [Flow(producer: producer, consumers: consumers)], unit: "deliveries/s")
    }

    /// One producer and the consumers it streams to.
    struct Flow {
        let producer: Agent<Producer>
        let consumers: [Agent<Consumer>]
    }

    func makeProducer(_ name: String, _ action: Producer.Action, fanout: Int, tenant: String)
        async throws -> Agent<Producer>
    {
        let (window, limit, bytes) = (settings.window, settings.messageLimit, settings.payloadBytes)
        return try await server.connect(name: name, tenant: tenant, group: group) {
            Producer(action: action, window: window, fanout: fanout, limit: limit, payloadBytes: bytes)
        }
    }

    func makeConsumer(
        _ name: String, subscriptions: [String], for producer: Agent<Producer>, index: Int, tenant: String
    ) async throws -> Agent<Consumer> {
        let bound = producer.behaviour
        return try await server.connect(name: name, tenant: tenant, subscriptions: subscriptions, group: group) {
            Consumer(producer: bound, index: index)
        }
    }

    /// Starts every producer, stops them when the time is up, waits for what is in flight and counts.
    func measure(_ scenario: Scenario, _ flows: [Flow], unit: String) async throws -> ScenarioResult {
        let consumers = flows.flatMap(\.consumers)
        func delivered() async throws -> UInt64 {
            var total: UInt64 = 0
            for consumer in consumers { total += try await consumer.run { $0.tally.unique } }
            return total
        }
        let memory = MemorySampler(pid: server.pid)
        let started = ContinuousClock.now
        for flow in flows { try await flow.producer.run { $0.start() } }
        try await timed(scenario) { (try await delivered(), unit) }
        var sends: [SendCounts] = []
        for flow in flows { sends.append(try await flow.producer.run { $0.stop() }) }
        let expected = zip(flows, sends).reduce(UInt64(0)) {
            $0 + ($1.1.sent - $1.1.refusedTotal) * UInt64($1.0.consumers.count)
        }
        _ = try await drain(to: expected, delivered)
        let elapsed = started.duration(to: .now)
        if server.kind == .acb {
            _ = try await drain(to: sends.reduce(0) { $0 + $1.sent }) {
                var answered: UInt64 = 0
                for flow in flows {
                    answered += try await flow.producer.run { $0.counts.accepted + $0.counts.refusedTotal }
                }
                return answered
            }
            sends = []
            for flow in flows { sends.append(try await flow.producer.run { $0.counts }) }
        }

        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: 0, unit: unit, seconds: elapsed.seconds)
        var latency = LatencyRecorder()
        for (flow, counts) in zip(flows, sends) {
            result.sent += counts.sent
            result.refused.merge(counts.refused, uniquingKeysWith: +)
            // ACB says how many receivers took each message (a fan-out skips a receiver whose
            // mailbox is full, and tells the publisher); NATS says nothing, so all of them should.
            let expected =
                server.kind == .acb
                ? counts.recipients : (counts.sent - counts.refusedTotal) * UInt64(flow.consumers.count)
            if server.kind == .acb { result.unanswered += counts.sent - counts.accepted - counts.refusedTotal }
            var received: UInt64 = 0
            for consumer in flow.consumers {
                let (tally, recorded) = try await consumer.run { ($0.tally, $0.latency) }
                received += tally.unique
                result.duplicates += tally.duplicates
                latency.add(recorded)
            }
            result.expected += expected
            result.received += received
            result.lost += expected > received ? expected - received : 0
        }
        result.rate = Double(result.received) / elapsed.seconds
        result.record(latency)
        result.memory = await memory?.stop()
        for flow in flows {
            await flow.producer.close()
            for consumer in flow.consumers { await consumer.close() }
        }
        return result
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
