import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1))) struct RegistryTests {
    @Test func discoverFiltersAndPages() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            var workers: [ACBClient] = []
            for index in 0..<5 {
                let worker = try await bus.client("w\(index)")
                try await worker.register(
                    AgentDescription(
                        agentType: index.isMultiple(of: 2) ? "even" : "odd", capabilities: ["c\(index)", "all"],
                        location: "rack-\(index)", metadata: [MetadataEntry(key: "index", value: "\(index)")]))
                workers.append(worker)
            }
            #expect(try await alice.discover(type: "even").agents.map(\.agentID) == ["w0", "w2", "w4"])
            #expect(try await alice.discover(capability: "c3").agents.map(\.agentID) == ["w3"])
            let first = try await alice.discover(capability: "all", limit: 2)
            #expect(first.agents.map(\.agentID) == ["w0", "w1"] && !first.nextCursor.isEmpty)
            let second = try await alice.discover(capability: "all", cursor: first.nextCursor, limit: 2)
            #expect(second.agents.map(\.agentID) == ["w2", "w3"])
            let last = try await alice.discover(capability: "all", cursor: second.nextCursor, limit: 2)
            #expect(last.agents.map(\.agentID) == ["w4"] && last.nextCursor.isEmpty)
            let info = try #require(last.agents.first)
            #expect(info.status == .online && info.description.location == "rack-4")
            #expect(info.description.metadata == [MetadataEntry(key: "index", value: "4")])
            try await workers[4].unregister()
            #expect(try await alice.discover(capability: "all").agents.count == 4)
            await expectBusError(.invalidArgument) {
                try await alice.register(AgentDescription(agentType: "bad type", capabilities: []))
            }
            for client in workers + [alice] { await client.close() }
        }
    }

    @Test func anAgentThatStopsHeartbeatingGoesOffline() async throws {
        try await TestBus.with({
            // Well-behaved clients heartbeat every 500 ms; two seconds of silence end a session.
            $0.supervisor.limits.heartbeatIntervalMs = 500
            $0.supervisor.missedHeartbeats = 4
            $0.supervisor.tickMs = 50
        }) { bus in
            // Registered without a session, as the admin API does (a session would have to heartbeat
            // within this test's two seconds however busy the machine is), then back as one that
            // never says a word.
            _ = try await bus.server.supervisor.register(
                AgentKey(tenant: "acme", agentID: "silent"), AgentDescription(agentType: "t", capabilities: []))
            var silent = try await bus.raw()
            guard case .welcome(let welcome) = try await silent.hello(try await bus.token("silent")) else {
                Issue.record("expected WELCOME")
                return
            }
            var goAway: GoAway?
            while let frame = try await silent.read() {
                if case .goAway(let frame) = frame { goAway = frame }
            }
            #expect(goAway?.code == .heartbeatTimeout)
            await bus.audit.first { $0.kind == "session.closed" && $0.detail["session"] == "\(welcome.sessionID)" }
            // Asked of the supervisor, not through a session: one that must outlive the short
            // heartbeat of this test would depend on how busy the machine is.
            let supervisor = bus.server.supervisor
            let offline = supervisor.discover(tenant: "acme", Discover(ref: 1, status: .offline)).agents
            #expect(offline.map(\.agentID) == ["silent"])
            #expect(supervisor.discover(tenant: "acme", Discover(ref: 2, status: .online)).agents.isEmpty)
        }
    }

    @Test func aSecondConnectionOfTheSameAgentTakesOver() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            var first = try await bus.raw()
            let token = try await bus.token("bob")
            _ = try await first.hello(token)
            let second = try await bus.client("bob")
            guard case .goAway(let goAway) = try await first.read() else { Issue.record("expected GOAWAY"); return }
            #expect(goAway.code == .replaced)
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "to the new one"))
            var inbox = second.deliveries.makeAsyncIterator()
            #expect(try await inbox.take().text == "to the new one")
            await alice.close()
            await second.close()
        }
    }
}
