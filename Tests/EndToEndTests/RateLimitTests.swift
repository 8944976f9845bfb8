import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Testing

/// Per-agent rate limits: a token bucket per agent that a reconnect does not refill; and the cap
/// on connections per source address.
@Suite(.timeLimit(.minutes(1))) struct RateLimitTests {
    @Test func oneConnectionTooManyFromAnAddressIsClosedAtOnce() async throws {
        try await TestBus.with({ $0.maxConnectionsPerAddress = 2 }) { bus in
            var held: [RawConnection] = []
            for agent in ["a", "b"] {
                var raw = try await bus.raw()
                guard case .welcome = try await raw.hello(try await bus.token(agent)) else {
                    Issue.record("no WELCOME for \(agent)"); return
                }
                held.append(raw)
            }
            var third = try await bus.raw()
            try? await third.send(.hello(Hello(token: try await bus.token("c"), clientName: "raw")))
            #expect(try await third.read() == nil, "closed without an answer")
            let event = await bus.audit.first { $0.kind == "security.connection_refused" }
            #expect(event.detail["address"] == "127.0.0.1" && event.detail["refused"] == "1")
            for raw in held { await raw.close() }
        }
    }

    @Test func anAgentOverItsRateIsToldWhenToRetryEvenAfterReconnecting() async throws {
        try await TestBus.with({
            // One command per 1,000 seconds after a burst of 3: no token comes back during the test.
            $0.supervisor.rateLimitPerSecond = 0.001
            $0.supervisor.rateLimitBurst = 3
        }) { bus in
            let bob = try await bus.client("bob")
            var alice = try await bus.client("alice")
            for _ in 0..<3 { try await alice.send(to: .agent("bob"), ByteBuffer(string: "within")) }
            var error = await expectBusError(.rateLimited) {
                try await alice.send(to: .agent("bob"), ByteBuffer(string: "over"))
            }
            #expect(
                error.map { $0.retryAfterMs > 900_000 && $0.retryAfterMs <= 1_000_000 } == true,
                "\(String(describing: error))")
            // Frames that start no work (ACK, HEARTBEAT, UNSUBSCRIBE) are not limited: this one
            // gets its own answer, not rate_limited.
            await expectBusError(.invalidArgument) { try await alice.unsubscribe("nothing.>") }
            // A second connection takes over while the first is still open: the same bucket.
            let first = alice
            alice = try await bus.client("alice") { $0.reconnect = false }
            error = await expectBusError(.rateLimited) { try await alice.send(to: .agent("bob"), ByteBuffer()) }
            await first.close()
            #expect(error?.message.contains("retry in") == true)
            let event = await bus.audit.first { $0.kind == "security.rate_limited" }
            #expect(event.agentID == "alice" && event.detail["frame"] == "send")
            await alice.close()
            await bob.close()
        }
    }
}
