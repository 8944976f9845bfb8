import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct RequestReplyTests {
    @Test func aRequestGetsItsReply() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            bob.serve { request in ByteBuffer(string: request.text.uppercased()) }
            let reply = try await alice.request(.agent("bob"), ByteBuffer(string: "ping"))
            #expect(reply.text == "PING" && reply.from == "bob" && reply.status == .ok)
            await alice.close()
            await bob.close()
        }
    }

    @Test func aHandlerErrorComesBackAsAnErrorReply() async throws {
        struct Refusal: Error {}
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            bob.serve { _ in throw Refusal() }
            let reply = try await alice.request(.agent("bob"), ByteBuffer(string: "ping"))
            #expect(reply.status == .error && reply.text.contains("Refusal"))
            await alice.close()
            await bob.close()
        }
    }

    @Test func capabilityRoutingPicksAReadyAgentAndSkipsBusyOnes() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let busy = try await bus.client("w-busy")
            let ready = try await bus.client("w-ready")
            for worker in [busy, ready] {
                try await worker.register(AgentDescription(agentType: "worker", capabilities: ["sum"]))
                let name = worker.welcome!.agentID
                worker.serve { _ in ByteBuffer(string: name) }
            }
            // A session handles its frames in order: once DISCOVER is answered, the HEARTBEAT before it counted.
            busy.setReadiness(.busy)
            _ = try await busy.discover()
            for _ in 0..<5 { #expect(try await alice.request(.capability("sum"), ByteBuffer()).from == "w-ready") }
            ready.setReadiness(.draining)
            _ = try await ready.discover()
            #expect(try await alice.discover(capability: "sum").agents.allSatisfy { $0.readiness != .ready })
            await expectBusError(.noCapableAgent) { _ = try await alice.request(.capability("sum"), ByteBuffer()) }
            await expectBusError(.unavailable) { _ = try await alice.request(.agent("w-ready"), ByteBuffer()) }
            for client in [alice, busy, ready] { await client.close() }
        }
    }

    @Test func capabilityRoutingPrefersTheLeastLoadedAgent() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let loaded = try await bus.client("w-a")
            let idle = try await bus.client("w-b")
            for worker in [loaded, idle] {
                try await worker.register(AgentDescription(agentType: "worker", capabilities: ["job"]))
            }
            idle.serve { _ in ByteBuffer(string: "b") }
            // w-a holds an unacknowledged delivery, so it has one in flight; by name alone it would win.
            try await alice.send(to: .agent("w-a"), ByteBuffer(string: "pending"))
            var inbox = loaded.deliveries.makeAsyncIterator()
            _ = try await inbox.take()  // written, so counted in flight; not acknowledged while unread
            #expect(try await alice.discover(capability: "job").agents.first { $0.agentID == "w-a" }?.inFlight == 1)
            #expect(try await alice.request(.capability("job"), ByteBuffer()).from == "w-b")
            for client in [alice, loaded, idle] { await client.close() }
        }
    }

    @Test func aRequestWithoutAReplyTimesOutAndTheLateReplyIsDropped() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            await expectBusError(.timeout) { _ = try await alice.request(.agent("bob"), ByteBuffer(), timeoutMs: 400) }
            guard case .deliver(let request) = try await bob.read() else { Issue.record("expected DELIVER"); return }
            #expect(request.kind == .request)
            try await bob.send(.reply(Reply(correlationID: request.correlationID, payload: ByteBuffer(string: "late"))))
            let late = await bus.audit.first("reply.late", agent: "bob")
            #expect(late.tenant == "acme")
            await alice.close()
        }
    }

    @Test func aResponderThatDisconnectsFailsTheRequestAsUnavailable() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            let answer = Task { try await alice.request(.agent("bob"), ByteBuffer(), timeoutMs: 30_000) }
            guard case .deliver = try await bob.read() else { Issue.record("expected DELIVER"); return }
            await bob.close()
            await expectBusError(.unavailable) { _ = try await answer.value }
            await alice.close()
        }
    }

    @Test func aRetriedRequestWithTheSameKeyGetsTheStoredReplyWithoutRunningTwice() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let runs = Atomic<Int>(0)
            bob.serve { _ in
                let run = runs.add(1, ordering: .relaxed).newValue
                return ByteBuffer(string: "run \(run)")
            }
            for _ in 0..<3 {
                let reply = try await alice.request(.agent("bob"), ByteBuffer(), idempotencyKey: "charge-42")
                #expect(reply.text == "run 1")
            }
            #expect(runs.load(ordering: .relaxed) == 1)
            await alice.close()
            await bob.close()
        }
    }

    @Test func aNestedRequestInheritsWhatIsLeftOfTheDeadline() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let carol = try await bus.client("carol")
            let seen = Mutex<(outer: UInt64?, inner: UInt64?)>((nil, nil))
            carol.serve { request in
                seen.withLock { $0.inner = request.deadline }
                return ByteBuffer()
            }
            bob.serve { request in
                seen.withLock { $0.outer = request.deadline }
                _ = try await bob.request(.agent("carol"), ByteBuffer(), timeoutMs: 600_000)
                return ByteBuffer()
            }
            // A minute: the test is about which deadline carol sees, and a loaded machine can stall for seconds.
            _ = try await alice.request(.agent("bob"), ByteBuffer(), timeoutMs: 60_000)
            let (outer, inner) = seen.withLock { $0 }
            #expect(outer != nil && inner == outer, "carol's deadline is bob's, not ten minutes")
            for client in [alice, bob, carol] { await client.close() }
        }
    }
}
