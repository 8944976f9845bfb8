import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1))) struct DeliveryTests {
    @Test func aDeliveryThatIsNotAcknowledgedIsDeliveredAgain() async throws {
        try await TestBus.with({
            $0.supervisor.ackTimeoutMs = 200; $0.supervisor.tickMs = 50
        }) { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "again"))
            guard case .deliver(let first) = try await bob.read(),
                case .deliver(let second) = try await bob.read()
            else { Issue.record("expected two DELIVERs"); return }
            #expect(first.attempt == 1 && second.attempt == 2)
            #expect(second.deliveryID > first.deliveryID)
            #expect(second.payload == first.payload)
            try await bob.send(.ack(Ack(deliveryID: second.deliveryID, cumulative: true)))
            await alice.close()
        }
    }

    @Test func aDeliveryNackedOnEveryAttemptIsDeadLettered() async throws {
        try await TestBus.with({ $0.supervisor.maxDeliveryAttempts = 2 }) { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "poison"))
            for attempt in 1...2 as ClosedRange<UInt16> {
                guard case .deliver(let delivery) = try await bob.read() else { Issue.record("no DELIVER"); return }
                #expect(delivery.attempt == attempt)
                try await bob.send(.nack(Ack(deliveryID: delivery.deliveryID)))
            }
            let letter = await bus.audit.first("message.dead_lettered", agent: "bob").detail
            #expect(letter["reason"] == "rejected" && letter["attempts"] == "2" && letter["from"] == "alice")
            await alice.close()
        }
    }

    @Test func aReceiverThatKeepsDisconnectingUsesUpTheAttemptsAndTheMessageIsDeadLettered() async throws {
        try await TestBus.with({ $0.supervisor.maxDeliveryAttempts = 2 }) { bus in
            let alice = try await bus.client("alice")
            let token = try await bus.token("bob")
            for attempt in 1...2 as ClosedRange<UInt16> {
                var bob = try await bus.raw()
                guard case .welcome(let welcome) = try await bob.hello(token) else {
                    Issue.record("no WELCOME"); return
                }
                if attempt == 1 { try await alice.send(to: .agent("bob"), ByteBuffer(string: "poison")) }
                guard case .deliver(let delivery) = try await bob.read() else { Issue.record("no DELIVER"); return }
                #expect(delivery.attempt == attempt)
                await bob.close()
                await bus.audit.first { $0.kind == "session.closed" && $0.detail["session"] == "\(welcome.sessionID)" }
            }
            let letter = await bus.audit.first("message.dead_lettered", agent: "bob").detail
            #expect(letter["reason"] == "unavailable" && letter["attempts"] == "2")
            await alice.close()
        }
    }

    /// close() acknowledges what the application was handed; what it was not handed yet comes
    /// again to the next session (make demo run twice showed the first run's messages again).
    @Test func closingAcknowledgesWhatTheApplicationWasHanded() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.client("bob")
            var inbox = bob.deliveries.makeAsyncIterator()
            for index in 1...3 { try await alice.send(to: .agent("bob"), ByteBuffer(string: "m\(index)")) }
            #expect(try await inbox.take().text == "m1")
            #expect(try await inbox.take().text == "m2")
            await bob.close()
            bob = try await bus.client("bob")
            inbox = bob.deliveries.makeAsyncIterator()
            let next = try await inbox.take()
            #expect(next.text == "m3", "m2 was handed out before the close: it must not come again")
            await bob.close()
            await alice.close()
        }
    }

    @Test func unacknowledgedDeliveriesReachTheAgentsNextSession() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.raw()
            let token = try await bus.token("bob")
            _ = try await bob.hello(token)
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "keep me"))
            guard case .deliver(let first) = try await bob.read() else { Issue.record("expected DELIVER"); return }
            await bob.close()
            bob = try await bus.raw()
            _ = try await bob.hello(token)
            guard case .deliver(let again) = try await bob.read() else { Issue.record("expected DELIVER"); return }
            #expect(again.payload == first.payload && again.attempt == 2)
            await alice.close()
        }
    }

    @Test func deliveriesOfAnAgentThatNeverReturnsAreDeadLetteredAfterTheirTime() async throws {
        try await TestBus.with({
            $0.supervisor.orphanTTLMs = 0
            $0.supervisor.housekeepingMs = 20
        }) { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "for bob"))
            guard case .deliver = try await bob.read() else { Issue.record("expected DELIVER"); return }
            await bob.close()
            let letter = await bus.audit.first("message.dead_lettered", agent: "bob").detail
            #expect(letter["reason"] == "offline" && letter["from"] == "alice")
            await alice.close()
        }
    }

    @Test func aSlowReceiverMakesSendersBackOffAndIsThenDisconnected() async throws {
        try await TestBus.with({
            $0.supervisor.limits.maxUnacked = 2
            $0.supervisor.mailboxCapacity = 2
            $0.supervisor.slowConsumerTimeoutMs = 200
            $0.supervisor.tickMs = 50
        }) { bus in
            let alice = try await bus.client("alice")
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            // Fill bob's window (2) and mailbox (2), honouring the retry hint as a client should:
            // a refusal can come before bob's session moved the first messages into its window.
            var accepted = 0
            for _ in 0..<1000 where accepted < 4 {
                do {
                    try await alice.send(to: .agent("bob"), ByteBuffer(string: "\(accepted)"))
                    accepted += 1
                } catch let error as BusError where error.code == .overloaded {
                    try await Task.sleep(for: .milliseconds(Int(error.retryAfterMs)))
                }
            }
            #expect(accepted == 4)
            let refusal = await expectBusError(.overloaded) {
                try await alice.send(to: .agent("bob"), ByteBuffer(string: "one too many"))
            }
            #expect((refusal?.retryAfterMs ?? 0) > 0)
            var goAway: GoAway?
            while let frame = try await bob.read() {
                if case .goAway(let frame) = frame { goAway = frame }
            }
            #expect(goAway?.code == .slowConsumer)
            await alice.close()
        }
    }
}
