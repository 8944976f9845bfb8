import ACBClient
import NIOCore

/// p2p, topic fan-out and broadcast: producers stream to consumers in a ``LoadShape``.
extension Bench {
    /// p2p:N, durable-online:N (`durable`: each message stored before the bus answers it) and
    /// sealed-p2p:N (`sealed`: each pair with keys of its own, every payload a box).
    func p2p(
        _ scenario: Scenario, pairs: Int, shape: LoadShape, durable: Bool = false, sealed: Bool = false, names: Names
    ) async throws -> ScenarioResult {
        var flows: [Flow] = []
        for index in 0..<pairs {
            let receiver = names.agent("r", index)
            let (sender, opener) = sealed ? BoxSealer.pair() : (nil, nil)
            let producer = try await makeProducer(
                names.agent("s", index), .send(to: receiver, durable: durable), shape: shape, fanout: 1,
                tenant: names.tenant, sealer: sender)
            let consumer = try await makeConsumer(
                receiver, subscriptions: [], for: producer, shape: shape, index: 0, tenant: names.tenant,
                opener: opener)
            flows.append(Flow(producer: producer, consumers: [consumer]))
        }
        return try await measure(scenario, flows, unit: "msgs/s")
    }

    func fanout(_ scenario: Scenario, receivers: Int, shape: LoadShape, names: Names) async throws -> ScenarioResult {
        let isTopic = if case .topicFanout = scenario { true } else { false }
        let producer = try await makeProducer(
            names.agent("p", 0), isTopic ? .publish(topic: names.topic) : .broadcast, shape: shape,
            fanout: receivers, tenant: names.tenant)
        var consumers: [Agent<Consumer>] = []
        for index in 0..<receivers {
            consumers.append(
                try await makeConsumer(
                    names.agent("c", index), subscriptions: isTopic ? [names.pattern(index)] : [], for: producer,
                    shape: shape, index: index, tenant: names.tenant))
        }
        return try await measure(scenario, [Flow(producer: producer, consumers: consumers)], unit: "deliveries/s")
    }

    /// One producer and the consumers it streams to.
    struct Flow {
        let producer: Agent<Producer>
        let consumers: [Agent<Consumer>]
    }

    func makeProducer(
        _ name: String, _ action: Producer.Action, shape: LoadShape, fanout: Int, tenant: String,
        sealer: BoxSealer? = nil
    ) async throws -> Agent<Producer> {
        let (window, limit, bytes) = (settings.window, settings.messageLimit, settings.payloadBytes)
        return try await server.connect(name: name, tenant: tenant, group: group) {
            Producer(
                action: action, shape: shape, window: window, fanout: fanout, limit: limit, payloadBytes: bytes,
                sealer: sealer)
        }
    }

    /// A consumer of `producer`; in the window shape it reports its progress to it.
    func makeConsumer(
        _ name: String, subscriptions: [String], for producer: Agent<Producer>, shape: LoadShape, index: Int,
        tenant: String, opener: BoxSealer? = nil
    ) async throws -> Agent<Consumer> {
        let bound = shape == .window ? producer.behaviour : nil
        return try await server.connect(name: name, tenant: tenant, subscriptions: subscriptions, group: group) {
            Consumer(producer: bound, index: index, opener: opener)
        }
    }

    /// Starts every producer, stops them when the time is up, waits for what is in flight and counts.
    func measure(_ scenario: Scenario, _ flows: [Flow], unit: String) async throws -> ScenarioResult {
        let producers = flows.map(\.producer)
        let consumers = flows.flatMap(\.consumers)
        func delivered() async throws -> UInt64 {
            var total: UInt64 = 0
            for consumer in consumers { total += try await consumer.run { $0.tally.unique } }
            return total
        }
        func sendCounts() async throws -> [SendCounts] {
            var counts: [SendCounts] = []
            for producer in producers { counts.append(try await producer.run { $0.counts }) }
            return counts
        }
        let usage = ServerSampler(pid: server.pid)
        let started = Stamp.now()
        for producer in producers { try await producer.run { $0.start() } }
        try await timed(
            scenario, isDone: { try await sendCounts().allSatisfy { $0.sent == self.settings.messageLimit } },
            progress: { (try await delivered(), unit) })
        for producer in producers { _ = try await producer.run { $0.stop() } }
        if server.kind.isACB {
            // Every ACB send is answered (an OK or ERROR of its own, or a CONFIRM); the answers say how
            // many receivers each message reached.
            let sent = try await sendCounts().reduce(0) { $0 + $1.sent }
            try await drain(to: sent) { try await sendCounts().reduce(0) { $0 + $1.accepted + $1.refusedTotal } }
        }
        let sends = try await sendCounts()
        // ACB says how many receivers took each message (a confirmed one reached all of them; a
        // fan-out that skipped a receiver whose mailbox is full says so in its OK); NATS says
        // nothing, so every receiver should have it, and what nats-server dropped counts as lost.
        let expected = zip(flows, sends).map { flow, counts in
            server.kind.isACB
                ? counts.recipients : counts.sent.minus(counts.refusedTotal) * UInt64(flow.consumers.count)
        }
        try await drain(to: expected.reduce(0, +), delivered)
        var lastArrival: UInt64 = 0
        for consumer in consumers { lastArrival = max(lastArrival, try await consumer.run { $0.lastArrival }) }
        let seconds = Self.seconds(from: started, to: lastArrival)

        var result = ScenarioResult(scenario: scenario, server: server.kind, rate: 0, unit: unit, seconds: seconds)
        var latency = LatencyRecorder()
        for ((flow, counts), expected) in zip(zip(flows, sends), expected) {
            result.sent += counts.sent
            result.refused.merge(counts.refused, uniquingKeysWith: +)
            if server.kind.isACB {
                result.unanswered += counts.unanswered
                let skipped = (counts.accepted * UInt64(flow.consumers.count)).minus(counts.recipients)
                if skipped > 0 { result.refused["skipped_receiver", default: 0] += skipped }
            }
            var received: UInt64 = 0
            for consumer in flow.consumers {
                let (tally, recorded) = try await consumer.run { ($0.tally, $0.latency) }
                received += tally.unique
                result.duplicates += tally.duplicates
                latency.add(recorded)
            }
            result.expected += expected
            result.received += received
            result.lost += expected.minus(received)
        }
        try await finish(&result, seconds: seconds, latency: latency, usage: usage, agents: producers, consumers)
        return result
    }
}
