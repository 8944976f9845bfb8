import NIOCore

/// The context scenarios (``ContextScenario``): what all four share (their contexts made before the
/// clock starts, the NATS bucket removed after), then `ctx-put` and `ctx-get`.
extension Bench {
    func contexts(_ scenario: Scenario, _ context: ContextScenario, names: Names) async throws -> ScenarioResult {
        let bucket = names.tenant
        let result: ScenarioResult
        switch context {
        case .put(let writers): result = try await contextPuts(scenario, writers: writers, bucket: bucket, names: names)
        case .get(let clients): result = try await contextGets(scenario, clients: clients, bucket: bucket, names: names)
        case .watch(let watchers):
            result = try await contextWatch(scenario, watchers: watchers, bucket: bucket, names: names)
        case .cas(let writers): result = try await contextCAS(scenario, writers: writers, bucket: bucket, names: names)
        }
        if server.kind == .nats { _ = try await steps([.deleteBucket(bucket)], role: "cleanup", names: names) }
        return result
    }

    /// Makes a scenario's contexts: on NATS the bucket first, then `seeds`, their first versions.
    func seed(_ seeds: [ContextCommand], bucket: String, names: Names) async throws {
        let bucketSteps: [ContextCommand] = server.kind == .nats ? [.createBucket(bucket)] : []
        _ = try await steps(bucketSteps + seeds, role: "seed", names: names)
    }

    /// Runs `commands` one after another on a connection of their own (agent `role`), and returns
    /// their answers.
    /// - Throws: ``WireError`` if one is refused or goes unanswered for 2 s (a nats-server without
    ///   JetStream never answers a KV command: it needs `-js`).
    func steps(_ commands: [ContextCommand], role: String, names: Names) async throws -> [ContextSteps.Answer] {
        let agent = try await server.connect(name: names.agent(role, 0), tenant: names.tenant, group: group) {
            ContextSteps(commands)
        }
        let all = UInt64(commands.count)
        try await drain(to: all) { try await agent.run { $0.isDone ? all : UInt64($0.answers.count) } }
        let (answers, failure) = try await agent.run { ($0.answers, $0.failure) }
        await agent.close()
        guard answers.count == commands.count else {
            let why = failure.map { "was refused: \($0)" } ?? "got no answer (NATS: is JetStream on, nats-server -js?)"
            throw WireError("\(server.kind.rawValue): \(role) step \(answers.count + 1) of \(commands.count) \(why)")
        }
        return answers
    }

    /// `ctx-put:W`: each writer puts to its own context, a window of puts in flight.
    private func contextPuts(_ scenario: Scenario, writers: Int, bucket: String, names: Names)
        async throws -> ScenarioResult
    {
        var stamp = ContextStamp()
        var seeds: [ContextCommand] = []
        var writerAgents: [Agent<ContextWriter>] = []
        let (window, limit) = (settings.window, settings.messageLimit)
        for index in 0..<writers {
            let (key, name) = (ContextKey(bucket: bucket, name: "bench.w\(index)"), names.agent("w", index))
            seeds.append(.create(key, stamp.body(sequence: 0, nanos: Stamp.now()), writers: [name]))
            writerAgents.append(
                try await server.connect(name: name, tenant: names.tenant, group: group) {
                    ContextWriter(key: key, pace: .window(window), limit: limit)
                })
        }
        try await seed(seeds, bucket: bucket, names: names)
        let note =
            server.kind == .nats
            ? "JetStream file storage: nats-server syncs it to disk in the background, not before the PubAck"
            : "committed as the bus at --acb commits: to PostgreSQL only if it runs with --postgres-url"
        return try await runCommands(scenario, by: writerAgents, unit: "updates/s", note: note)
    }

    /// `ctx-get:C`: each client gets the same small context, one get in flight.
    private func contextGets(_ scenario: Scenario, clients: Int, bucket: String, names: Names)
        async throws -> ScenarioResult
    {
        let key = ContextKey(bucket: bucket, name: "bench.doc")
        var stamp = ContextStamp()
        let body = stamp.body(sequence: 0, nanos: Stamp.now())
        try await seed([.create(key, body, writers: [])], bucket: bucket, names: names)
        let limit = settings.messageLimit
        var readers: [Agent<ContextReader>] = []
        for index in 0..<clients {
            readers.append(
                try await server.connect(name: names.agent("g", index), tenant: names.tenant, group: group) {
                    ContextReader(key: key, limit: limit)
                })
        }
        return try await runCommands(scenario, by: readers, unit: "gets/s")
    }

    /// Starts `senders`, lets them send for the scenario's time (in count mode until each is done),
    /// stops them and waits for the answers still due. The result counts every command
    /// (``record(_:in:)``), in `unit` a second from the start to the last answer.
    private func runCommands<S: PacedSender>(
        _ scenario: Scenario, by senders: [Agent<S>], unit: String, note: String? = nil
    ) async throws -> ScenarioResult {
        let usage = ServerSampler(pid: server.pid)
        let started = Stamp.now()
        for sender in senders { try await sender.run { $0.start() } }
        try await timed(
            scenario, isDone: { try await self.howMany(senders) { $0.isDone } == senders.count },
            progress: { (try await self.total(senders) { $0.counts }.accepted, unit) })
        for sender in senders { _ = try await sender.run { $0.stop() } }
        let sent = try await total(senders) { $0.counts }.sent
        try await drain(to: sent) {
            let counts = try await self.total(senders) { $0.counts }
            return counts.accepted + counts.refusedTotal
        }
        let (latency, lastArrival) = try await latencies(senders) { ($0.latency, $0.lastArrival) }
        let seconds = Self.seconds(from: started, to: lastArrival)
        let counts = try await total(senders) { $0.counts }

        var result = ScenarioResult(scenario: scenario, server: server.kind, rate: 0, unit: unit, seconds: seconds)
        record(counts, in: &result)
        result.note = note
        try await finish(&result, seconds: seconds, latency: latency, usage: usage, agents: senders)
        return result
    }

    /// What a scenario's commands got: each one sent is expected to be answered, and counted as
    /// received once the server did what it asked.
    func record(_ counts: SendCounts, in result: inout ScenarioResult) {
        result.sent += counts.sent
        result.expected += counts.sent.minus(counts.refusedTotal)
        result.received += counts.accepted
        result.unanswered += counts.unanswered
        result.refused.merge(counts.refused, uniquingKeysWith: +)
    }

    /// The agents' counts, added up.
    func total<B: Behaviour>(_ agents: [Agent<B>], _ counts: @escaping @Sendable (B) -> SendCounts)
        async throws -> SendCounts
    {
        var total = SendCounts()
        for agent in agents {
            let counts = try await agent.run(counts)
            total.sent += counts.sent
            total.accepted += counts.accepted
            total.recipients += counts.recipients
            total.refused.merge(counts.refused, uniquingKeysWith: +)
        }
        return total
    }

    /// How many of the agents pass `test`.
    func howMany<B: Behaviour>(_ agents: [Agent<B>], _ test: @escaping @Sendable (B) -> Bool) async throws -> Int {
        var passed = 0
        for agent in agents {
            if try await agent.run(test) { passed += 1 }
        }
        return passed
    }

    /// The agents' latencies, added up, and the last time any of them heard an answer.
    func latencies<B: Behaviour>(
        _ agents: [Agent<B>], _ read: @escaping @Sendable (B) -> (LatencyRecorder, UInt64)
    ) async throws -> (LatencyRecorder, UInt64) {
        var latency = LatencyRecorder()
        var lastArrival: UInt64 = 0
        for agent in agents {
            let (recorded, arrival) = try await agent.run(read)
            latency.add(recorded)
            lastArrival = max(lastArrival, arrival)
        }
        return (latency, lastArrival)
    }
}
