import NIOCore

/// `ctx-watch:N`: one writer updates one context at a fixed rate; every watcher must see every
/// version it committed, once and in order, and the latency runs from the writer's send.
extension Bench {
    func contextWatch(_ scenario: Scenario, watchers: Int, bucket: String, names: Names)
        async throws -> ScenarioResult
    {
        let key = ContextKey(bucket: bucket, name: "bench.watched")
        let writerName = names.agent("w", 0)
        var stamp = ContextStamp()
        let body = stamp.body(sequence: 0, nanos: Stamp.now())
        try await seed([.create(key, body, writers: [writerName])], bucket: bucket, names: names)
        var watcherAgents: [Agent<ContextWatcher>] = []
        for index in 0..<watchers {
            watcherAgents.append(
                try await server.connect(name: names.agent("watcher", index), tenant: names.tenant, group: group) {
                    ContextWatcher(key: key)
                })
        }
        // Every watch is in place before the first write, which a late one would rightly miss.
        try await drain(to: UInt64(watchers)) {
            try await UInt64(self.howMany(watcherAgents) { $0.isWatching || $0.failure != nil })
        }
        for watcher in watcherAgents {
            let (watching, failure) = try await watcher.run { ($0.isWatching, $0.failure) }
            guard watching else {
                throw WireError("\(server.kind.rawValue): a watch was not set up: \(failure ?? "no answer")")
            }
        }
        let (window, limit) = (settings.window, settings.messageLimit)
        let pace = SendLoop.Pace.openLoop(
            perSecond: Double(ContextScenario.watchRate), maxOutstanding: UInt64(window))
        let writer = try await server.connect(name: writerName, tenant: names.tenant, group: group) {
            ContextWriter(key: key, pace: pace, limit: limit)
        }
        func delivered() async throws -> UInt64 {
            var total: UInt64 = 0
            for watcher in watcherAgents { total += try await watcher.run { $0.tally.inOrder } }
            return total
        }

        let usage = ServerSampler(pid: server.pid)
        let started = Stamp.now()
        try await writer.run { $0.start() }
        try await timed(
            scenario, isDone: { try await writer.run { $0.isDone } },
            progress: { (try await delivered(), "deliveries/s") })
        let sent = try await writer.run { $0.stop().sent }
        try await drain(to: sent) { try await writer.run { $0.counts.accepted + $0.counts.refusedTotal } }
        let (counts, committed, skipped) = try await writer.run { ($0.counts, $0.committed, $0.skipped) }
        let expected = UInt64(committed?.count ?? 0) * UInt64(watchers)
        try await drain(to: expected, delivered)
        let (latency, lastArrival) = try await latencies(watcherAgents) { ($0.latency, $0.lastArrival) }
        let seconds = Self.seconds(from: started, to: lastArrival)

        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: 0, unit: "deliveries/s", seconds: seconds)
        result.sent = counts.sent
        result.unanswered = counts.unanswered
        result.refused = counts.refused
        result.skipped = skipped
        result.expected = expected
        var gaps: UInt64 = 0
        for watcher in watcherAgents {
            let (tally, failure) = try await watcher.run { ($0.tally, $0.failure) }
            if let failure { result.refused["watch ended: \(failure)", default: 0] += 1 }
            result.received += tally.inOrder
            result.duplicates += tally.duplicates
            result.lost += committed.map { tally.missing(of: $0) } ?? 0
            gaps += tally.gaps
        }
        result.note = Self.watchNote(committed: committed, watchers: watchers, gaps: gaps, result: result)
        try await finish(&result, seconds: seconds, latency: latency, usage: usage, agents: [writer], watcherAgents)
        return result
    }

    /// Whether every watcher saw every committed version in order, in words.
    private static func watchNote(
        committed: ClosedRange<UInt64>?, watchers: Int, gaps: UInt64, result: ScenarioResult
    ) -> String {
        guard let committed else { return "the writer had no write committed" }
        let versions = "versions \(committed.lowerBound)–\(committed.upperBound)"
        guard result.lost == 0 && result.duplicates == 0 else {
            return "\(versions): \(result.lost) missed (\(gaps) in gaps between versions seen), "
                + "\(result.duplicates) repeated or out of order, over \(watchers) watchers"
        }
        return "every one of \(watchers) watchers saw \(versions) in order: 0 gaps, 0 duplicates"
    }
}
