import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Testing

/// Per-agent rate limits: a token bucket per agent that a reconnect does not refill.
@Suite(.timeLimit(.minutes(1))) struct RateLimitTests {
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
