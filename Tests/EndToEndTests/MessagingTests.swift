import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1))) struct MessagingTests {
    @Test func aSendToAnOnlineAgentIsDelivered() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let ok = try await alice.send(to: .agent("bob"), ByteBuffer(string: "hello"))
            #expect(ok.outcome == .delivered && ok.recipients == 1)
            var inbox = bob.deliveries.makeAsyncIterator()
            let delivery = try await inbox.take()
            #expect(delivery.text == "hello")
            #expect(delivery.from == "alice" && delivery.kind == .direct && delivery.attempt == 1)
            await alice.close()
            await bob.close()
        }
    }

    @Test func messagesArriveInOrder() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            for index in 0..<200 { try await alice.send(to: .agent("bob"), ByteBuffer(string: "\(index)")) }
            var inbox = bob.deliveries.makeAsyncIterator()
            for index in 0..<200 { #expect(try await inbox.take().text == "\(index)") }
            await alice.close()
            await bob.close()
        }
    }

    @Test func aSendToAnUnknownAgentIsRefused() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            await expectBusError(.unknownAgent) { try await alice.send(to: .agent("nobody"), ByteBuffer()) }
            await expectBusError(.noCapableAgent) { try await alice.send(to: .capability("magic"), ByteBuffer()) }
            await alice.close()
        }
    }

    @Test func aSendToARegisteredAgentThatLeftIsRefusedAsOffline() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            try await bob.register(AgentDescription(agentType: "worker", capabilities: []))
            await bob.close()
            await bus.audit.first("session.closed", agent: "bob")
            #expect(try await alice.discover(status: .offline).agents.map(\.agentID) == ["bob"])
            await expectBusError(.offline) { try await alice.send(to: .agent("bob"), ByteBuffer()) }
            await alice.close()
        }
    }

    @Test func aPayloadOverTheInlineLimitIsRefused() async throws {
        try await TestBus.with({ $0.supervisor.limits.maxInlinePayload = 1024 }) { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let error = await expectBusError(.tooLarge) {
                try await alice.send(to: .agent("bob"), ByteBuffer(repeating: 1, count: 1025))
            }
            #expect(error?.message.contains("stream") == true)
            try await alice.send(to: .agent("bob"), ByteBuffer(repeating: 1, count: 1024))
            await alice.close()
            await bob.close()
        }
    }

    @Test func aMessageWhoseDeadlinePassedIsRefused() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            await expectBusError(.deadlineExceeded) {
                try await alice.send(to: .agent("bob"), ByteBuffer(string: "late"), deadline: 1)
            }
            await alice.close()
            await bob.close()
        }
    }

    @Test func anAgentOfAnotherTenantCannotBeNamed() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice", tenant: "acme")
            let bob = try await bus.client("bob", tenant: "globex")
            try await bob.register(AgentDescription(agentType: "worker", capabilities: ["work"]))
            await expectBusError(.unknownAgent) { try await alice.send(to: .agent("bob"), ByteBuffer()) }
            await expectBusError(.noCapableAgent) { _ = try await alice.request(.capability("work"), ByteBuffer()) }
            #expect(try await alice.discover().agents.isEmpty)
            #expect(try await alice.broadcast(ByteBuffer(string: "hi")) == 0)
            await alice.close()
            await bob.close()
        }
    }

    @Test func aBroadcastReachesEveryOtherAgentOfTheTenantOnly() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let carol = try await bus.client("carol")
            let outsider = try await bus.client("dave", tenant: "globex")
            #expect(try await alice.broadcast(ByteBuffer(string: "all hands")) == 2)
            for client in [bob, carol] {
                var inbox = client.deliveries.makeAsyncIterator()
                let delivery = try await inbox.take()
                #expect(delivery.kind == .broadcast && delivery.text == "all hands")
            }
            try await outsider.send(to: .agent("dave"), ByteBuffer(string: "self"))
            var outsiderInbox = outsider.deliveries.makeAsyncIterator()
            #expect(try await outsiderInbox.take().text == "self", "the outsider got nothing before its own message")
            for client in [alice, bob, carol, outsider] { await client.close() }
        }
    }

    @Test func aPublishReachesEverySubscriberWhosePatternMatches() async throws {
        try await TestBus.with { bus in
            let publisher = try await bus.client("pub")
            let star = try await bus.client("star")
            let tail = try await bus.client("tail")
            let other = try await bus.client("other")
            try await star.subscribe("orders.*.created")
            try await tail.subscribe("orders.>")
            try await other.subscribe("invoices.>")
            #expect(try await publisher.publish(topic: "orders.eu.created", ByteBuffer(string: "o1")) == 2)
            #expect(try await publisher.publish(topic: "orders.eu.shipped", ByteBuffer(string: "o2")) == 1)
            var starInbox = star.deliveries.makeAsyncIterator()
            let first = try await starInbox.take()
            #expect(first.subject == "orders.eu.created" && first.kind == .topic && first.text == "o1")
            var tailInbox = tail.deliveries.makeAsyncIterator()
            #expect(try await tailInbox.take().text == "o1")
            #expect(try await tailInbox.take().text == "o2")
            try await tail.unsubscribe("orders.>")
            #expect(try await publisher.publish(topic: "orders.eu.created", ByteBuffer(string: "o3")) == 1)
            await expectBusError(.invalidArgument) { try await publisher.publish(topic: "orders.*", ByteBuffer()) }
            await expectBusError(.invalidArgument) { try await star.subscribe("orders.>.x") }
            for client in [publisher, star, tail, other] { await client.close() }
        }
    }

    /// A publisher keeps the receivers of its last fan-out while nobody connects, leaves,
    /// subscribes or unsubscribes: each such change shows in its very next PUBLISH or BROADCAST.
    @Test func aRepeatedFanoutFollowsEveryChangeOfItsReceivers() async throws {
        try await TestBus.with { bus in
            let publisher = try await bus.client("pub")
            let topic = "news.eu"
            #expect(try await publisher.publish(topic: topic, ByteBuffer(string: "n0")) == 0)
            #expect(try await publisher.broadcast(ByteBuffer(string: "b0")) == 0)
            let bob = try await bus.client("bob")
            #expect(try await publisher.broadcast(ByteBuffer(string: "b1")) == 1)
            #expect(try await publisher.publish(topic: topic, ByteBuffer(string: "n1")) == 0)
            try await bob.subscribe("news.*")
            #expect(try await publisher.publish(topic: topic, ByteBuffer(string: "n2")) == 1)
            let carol = try await bus.client("carol")
            try await carol.subscribe("news.>")
            #expect(try await publisher.publish(topic: topic, ByteBuffer(string: "n3")) == 2)
            try await bob.unsubscribe("news.*")
            #expect(try await publisher.publish(topic: topic, ByteBuffer(string: "n4")) == 1)
            await carol.close()
            await bus.audit.first("session.closed", agent: "carol")
            #expect(try await publisher.publish(topic: topic, ByteBuffer(string: "n5")) == 0)
            #expect(try await publisher.broadcast(ByteBuffer(string: "b2")) == 1)
            var inbox = bob.deliveries.makeAsyncIterator()
            for expected in ["b1", "n2", "n3", "b2"] { #expect(try await inbox.take().text == expected) }
            for client in [publisher, bob] { await client.close() }
        }
    }

    @Test func aRetriedSendWithTheSameIdempotencyKeyIsDeliveredOnce() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            for _ in 0..<3 {
                let ok = try await alice.send(to: .agent("bob"), ByteBuffer(string: "once"), idempotencyKey: "k-1")
                #expect(ok.outcome == .delivered)
            }
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "next"))
            var inbox = bob.deliveries.makeAsyncIterator()
            #expect(try await inbox.take().text == "once")
            #expect(try await inbox.take().text == "next")
            await alice.close()
            await bob.close()
        }
    }
}
