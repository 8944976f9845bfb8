import ACBClient
import Actors
import Bus
import Foundation
import Gateway
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Persistence

/// Durable messages (docs/protocol.md 5.1b): stored in PostgreSQL before OK even when the receiver
/// is online, delivered once committed with their stored id, and never lost to a crash.
extension SidecarTests {
    @Suite struct DurableSendTests {
        @Test func aDurableSendToAnOnlineAgentIsStoredBeforeOKThenDeliveredWithItsID() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                var bob = try await RawAgent.connect(port: bus.port, token: try await bus.token("bob", tenant: tenant))
                let alice = try await bus.client("alice", tenant: tenant)
                let ok = try await alice.send(to: .agent("bob"), ByteBuffer(string: "kept"), durable: true)
                #expect(ok.outcome == .queued && ok.recipients == 1)
                let rows = try Sidecars.query("SELECT id FROM messages WHERE tenant_id = $1", [tenant])
                #expect(rows.count == 1, "committed before OK")

                let deliver = try await bob.nextDelivery()
                #expect(String(buffer: deliver.payload) == "kept" && deliver.from == "alice")
                #expect(deliver.messageID == UInt64(rows.integer(0, 0)), "DELIVER names the stored copy")
                try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                try await Sidecars.eventually("the acknowledgement to be stored") {
                    try DurableDeliveryTests.statuses(tenant) == ["acked"]
                }
                await alice.close()
                await bob.connection.close()
            }
        }

        /// A durable SEND takes its place in the receiver's mailbox: plain sends pipelined behind it
        /// arrive behind it, not before (kept back until it is committed).
        @Test func plainSendsBehindADurableOneArriveAfterIt() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                var bob = try await RawAgent.connect(port: bus.port, token: try await bus.token("bob", tenant: tenant))
                let alice = try await RawAgent.connect(
                    port: bus.port, token: try await bus.token("alice", tenant: tenant))
                try await alice.send(10, to: "bob") { $0 == 0 }
                var texts: [String] = []
                while texts.count < 10 {
                    let deliver = try await bob.nextDelivery()
                    texts.append(String(buffer: deliver.payload))
                    if texts.count == 1 { #expect(deliver.messageID != 0, "the durable one was stored") }
                    try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                }
                #expect(texts == (0..<10).map { "m\($0)" })
                await alice.connection.close()
                await bob.connection.close()
            }
        }

        /// A durable SEND takes its place among the plain ones already waiting for a slow
        /// receiver: it does not overtake them while it is stored, nor do later ones overtake it.
        @Test func aDurableSendKeepsItsPlaceBehindPlainOnesWaitingForASlowReceiver() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars({ $0.supervisor.limits.maxUnacked = 2 }) { bus in
                var bob = try await RawAgent.connect(port: bus.port, token: try await bus.token("bob", tenant: tenant))
                // Once a plain send is delivered at once, bob's stored backlog is read: his gate is open.
                let carol = try await bus.client("carol", tenant: tenant)
                var warmUps = 0
                try await Sidecars.eventually("bob's backlog to be read") {
                    warmUps += 1
                    return try await carol.send(to: .agent("bob"), ByteBuffer(string: "warm")).outcome == .delivered
                }
                for _ in 0..<warmUps {
                    let deliver = try await bob.nextDelivery()
                    try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                }
                var alice = try await RawAgent.connect(
                    port: bus.port, token: try await bus.token("alice", tenant: tenant), version: 1)
                try await alice.send(7, to: "bob") { $0 == 5 }
                var outcomes: [UInt64: Outcome] = [:]
                while outcomes.count < 7 {
                    guard case .ok(let ok) = try await alice.connection.read() else { continue }
                    outcomes[ok.ref] = ok.outcome
                }
                #expect(outcomes[6] == .queued && outcomes[1] == .delivered, "\(outcomes)")
                var texts: [String] = []
                while texts.count < 7 {
                    let deliver = try await bob.nextDelivery()
                    texts.append(String(buffer: deliver.payload))
                    if texts.last == "m5" { #expect(deliver.messageID != 0) }
                    try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                }
                #expect(texts == (0..<7).map { "m\($0)" })
                await carol.close()
                await alice.connection.close()
                await bob.connection.close()
            }
        }

        /// A durable message its receiver held when its session ended (here taken over by a new
        /// one) goes back to the backlog and comes to the new session, with the same id.
        @Test func aDurableMessageHeldByASessionThatEndsComesToTheNextOne() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                var first = try await RawAgent.connect(
                    port: bus.port, token: try await bus.token("bob", tenant: tenant))
                let alice = try await bus.client("alice", tenant: tenant)
                #expect(
                    try await alice.send(to: .agent("bob"), ByteBuffer(string: "kept"), durable: true).outcome
                        == .queued)
                let held = try await first.nextDelivery()  // and never acknowledged
                var second = try await RawAgent.connect(
                    port: bus.port, token: try await bus.token("bob", tenant: tenant))
                let again = try await second.nextDelivery()
                #expect(String(buffer: again.payload) == "kept" && again.messageID == held.messageID)
                #expect(again.attempt == 2)
                await first.connection.close()
                await second.connection.close()
                await alice.close()
            }
        }

        /// A durable PUBLISH that reaches nobody is answered as a plain one, and its credit comes back.
        @Test func aDurablePublishToNobodyGivesItsCreditBack() async throws {
            try await TestBus.withSidecars { bus in
                var alice = try await RawAgent.connect(
                    port: bus.port, token: try await bus.token("alice", tenant: TestBus.freshTenant()))
                var frames = ByteBuffer()
                for ref in UInt64(1)...300 {
                    Frame.publish(Fanout(ref: ref, topic: "nobody.listens", payload: ByteBuffer(), flags: .durable))
                        .encode(into: &frames)
                }
                Frame.ping(RefOnly(ref: 301)).encode(into: &frames)
                try await alice.connection.send(frames)
                // The CREDIT is granted soon after, maybe behind the PONG.
                var (credit, confirmed, ponged): (UInt32, UInt64, Bool) = (0, 0, false)
                while !ponged || credit < 256 {
                    switch try await alice.connection.read() {
                    case .credit(let grant): credit += grant.grant
                    case .confirm(let confirm): confirmed = confirm.ref
                    case .pong: ponged = true
                    case let other: Issue.record("unexpected \(String(describing: other))")
                    }
                }
                #expect(confirmed == 300, "answered as a plain fan-out")
                await alice.connection.close()
            }
        }

        @Test func aDurablePublishStoresACopyPerSubscriber() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                var readers: [ACBClient] = []
                for name in ["bob", "carol"] {
                    let reader = try await bus.client(name, tenant: tenant)
                    try await reader.subscribe("news.*")
                    readers.append(reader)
                }
                let alice = try await bus.client("alice", tenant: tenant)
                #expect(try await alice.publish(topic: "news.today", ByteBuffer(string: "extra"), durable: true) == 2)
                #expect(try DurableDeliveryTests.statuses(tenant).count == 2)
                for reader in readers {
                    var inbox = reader.deliveries.makeAsyncIterator()
                    let delivery = try await inbox.take()
                    #expect(delivery.text == "extra" && delivery.kind == .topic && delivery.subject == "news.today")
                    delivery.ack()
                }
                try await Sidecars.eventually("both copies to be acknowledged") {
                    try DurableDeliveryTests.statuses(tenant) == ["acked", "acked"]
                }
                for client in readers + [alice] { await client.close() }
            }
        }

        /// `--durable-tenants` and `--durable-agents`: the operator makes a tenant's or one agent's
        /// messages durable without the frames asking.
        @Test func aDurableTenantsOrAgentsSendsAreStoredWithoutAsking() async throws {
            let tenant = TestBus.freshTenant()
            let other = TestBus.freshTenant()
            try await TestBus.withSidecars({
                $0.supervisor.durableTenants = [tenant]
                $0.supervisor.durableAgents = [AgentKey(tenant: other, agentID: "frank")]
            }) { bus in
                let bob = try await bus.client("bob", tenant: tenant)
                let alice = try await bus.client("alice", tenant: tenant)
                var inbox = bob.deliveries.makeAsyncIterator()
                for index in 0..<3 {
                    #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "m\(index)")).outcome == .queued)
                    let delivery = try await inbox.take()
                    #expect(delivery.text == "m\(index)")
                    delivery.ack()
                }
                // Another tenant's sends are stored only while the receiver reads its backlog at
                // connect, but for those of the agent made durable.
                let dave = try await bus.client("dave", tenant: other)
                let erin = try await bus.client("erin", tenant: other)
                let frank = try await bus.client("frank", tenant: other)
                try await Sidecars.eventually("a plain send to be delivered at once") {
                    try await dave.send(to: .agent("erin"), ByteBuffer(string: "hi")).outcome == .delivered
                }
                #expect(try await frank.send(to: .agent("erin"), ByteBuffer(string: "kept")).outcome == .queued)
                await erin.close()
                await frank.close()
                await alice.close()
                await bob.close()
                await dave.close()
            }
        }

        /// The issue's proof: ten senders stream durable sends to ten online receivers that
        /// acknowledge as they go, and the bus is killed with SIGKILL mid-stream. After a restart
        /// every message answered OK is delivered; a message comes twice only under the same
        /// message id (a client that filters by it hands it out once), and in send order per sender.
        @Test func aKilledBusLosesNoDurableSendAnsweredOK() async throws {
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            let pairs = 10
            let perSender = 3_000
            var bus = try await BusProcess.start(spool: spool)
            defer { bus.kill() }

            let answered = NIOLockedValueBox<[Set<Int>]>(Array(repeating: [], count: pairs))
            try await withThrowingTaskGroup(of: [(UInt64, String)].self) { receivers in
                for pair in 0..<pairs {
                    var receiver = try await RawAgent.connect(
                        port: bus.port, token: try await bus.token("r\(pair)", tenant: tenant), register: true)
                    receivers.addTask { try await receiver.collectUntilClosed() }
                }
                try await withThrowingTaskGroup(of: Void.self) { senders in
                    for pair in 0..<pairs {
                        var sender = try await RawAgent.connect(
                            port: bus.port, token: try await bus.token("s\(pair)", tenant: tenant), version: 1)
                        senders.addTask {
                            try await sender.sendDurable(perSender, to: "r\(pair)", prefix: "s\(pair)-") { index in
                                answered.withLockedValue { _ = $0[pair].insert(index) }
                            }
                        }
                    }
                    // Mid-stream: a third of the sends answered.
                    try await Sidecars.eventually("a third of the sends to be answered") {
                        answered.withLockedValue { $0.map(\.count).reduce(0, +) } >= pairs * perSender / 3
                    }
                    bus.kill()
                    try await senders.waitForAll()
                }
                var before: [[(UInt64, String)]] = []
                for try await deliveries in receivers { before.append(deliveries) }
                // Deliveries before the kill, per receiver (the group yields them in any order).
                let seen = Dictionary(grouping: before.flatMap { $0 }) { String($0.1.prefix { $0 != "-" }) }

                bus = try await BusProcess.start(spool: spool)
                for pair in 0..<pairs {
                    let expected = answered.withLockedValue { $0[pair] }
                    var receiver = try await RawAgent.connect(
                        port: bus.port, token: try await bus.token("r\(pair)", tenant: tenant))
                    var deliveries = seen["s\(pair)"] ?? []
                    var missing = expected.subtracting(deliveries.map { Self.index(of: $0.1) })
                    while !missing.isEmpty {
                        let deliver = try await receiver.nextDelivery()
                        let text = String(buffer: deliver.payload)
                        deliveries.append((deliver.messageID ?? 0, text))
                        missing.remove(Self.index(of: text))
                        try await receiver.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                    }
                    await receiver.connection.close()
                    Self.expectOnceEachInOrder(deliveries, sender: "s\(pair)")
                }
            }
        }

        /// Filtered by message id as a client does, each message comes once and in send order.
        static func expectOnceEachInOrder(_ deliveries: [(UInt64, String)], sender: String) {
            var ids: [UInt64: String] = [:]
            var order: [Int] = []
            for (id, text) in deliveries {
                #expect(id != 0, "a durable message has a stored id")
                if let known = ids[id] {
                    #expect(known == text, "one id, one message")
                    continue
                }
                ids[id] = text
                order.append(index(of: text))
            }
            #expect(Set(order).count == order.count, "\(sender): one id per message")
            #expect(order == order.sorted(), "\(sender): in send order")
        }

        static func index(of text: String) -> Int { Int(text.split(separator: "-").last ?? "") ?? -1 }
    }
}

/// An agent on a raw connection speaking protocol 3, which a test drives frame by frame: DELIVER
/// then carries the stored message's id.
struct RawAgent {
    var connection: RawConnection

    /// Connects, says HELLO (version 3 unless told) and reads WELCOME and, from version 2, the
    /// first CREDIT; with `register`, registers the agent too.
    static func connect(port: Int, token: String, version: UInt16 = 3, register: Bool = false) async throws
        -> RawAgent
    {
        var connection = try await RawConnection.connect(port: port)
        guard case .welcome = try await connection.hello(token, version: version) else {
            throw BusError(.internal, "no WELCOME")
        }
        if version >= 2 {
            guard case .credit = try await connection.read() else { throw BusError(.internal, "no CREDIT") }
        }
        if register {
            try await connection.send(
                .register(Register(ref: 1, description: AgentDescription(agentType: "test", capabilities: []))))
            guard case .ok = try await connection.read() else { throw BusError(.internal, "REGISTER failed") }
        }
        return RawAgent(connection: connection)
    }

    /// The next DELIVER, skipping CREDIT, CONFIRM and OK.
    mutating func nextDelivery() async throws -> Deliver {
        while true {
            switch try await connection.read() {
            case .deliver(let deliver): return deliver
            case .credit, .confirm, .ok: continue
            case let other: throw BusError(.internal, "expected DELIVER, got \(String(describing: other))")
            }
        }
    }

    /// Acknowledges every DELIVER at once until the bus closes the connection.
    /// - Returns: each delivery's message id and text.
    mutating func collectUntilClosed() async throws -> [(UInt64, String)] {
        var deliveries: [(UInt64, String)] = []
        while true {
            let frame: Frame?
            do { frame = try await connection.read() } catch { return deliveries }
            guard let frame else { return deliveries }
            guard case .deliver(let deliver) = frame else { continue }
            deliveries.append((deliver.messageID ?? 0, String(buffer: deliver.payload)))
            try? await connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
        }
    }

    /// Writes SENDs `prefix`0 to `prefix`(`count` - 1) to `receiver` in one write, refs 1 to `count`,
    /// those `durable` picks with the durable flag.
    func send(_ count: Int, to receiver: String, prefix: String = "m", durable: (Int) -> Bool) async throws {
        var frames = ByteBuffer()
        for index in 0..<count {
            Frame.send(
                Send(
                    ref: UInt64(index + 1), target: .agent(receiver), payload: ByteBuffer(string: "\(prefix)\(index)"),
                    flags: durable(index) ? .durable : [])
            ).encode(into: &frames)
        }
        try await connection.send(frames)
    }

    /// Sends `count` durable SENDs to `receiver` (texts `prefix` + index) in one go, then calls
    /// `answered` with each index the bus answered OK `queued`, until all are answered or the
    /// connection closes. Speak protocol 1: no send window to keep to.
    mutating func sendDurable(
        _ count: Int, to receiver: String, prefix: String, answered: (Int) -> Void
    ) async throws {
        // The bus may be killed before it read them all: the answers it wrote still count.
        try? await send(count, to: receiver, prefix: prefix) { _ in true }
        var left = count
        while left > 0 {
            let frame: Frame?
            do { frame = try await connection.read() } catch { return }
            switch frame {
            case .ok(let ok):
                #expect(ok.outcome == .queued)
                answered(Int(ok.ref) - 1)
                left -= 1
            case .error(let error):
                Issue.record("a durable send failed: \(error.error)")
                left -= 1
            case .none: return
            default: continue
            }
        }
    }
}

/// What a bus refuses about durability, whatever its storage.
@Suite(.timeLimit(.minutes(1))) struct DurableRefusalTests {
    @Test func aBusWithoutPostgreSQLRefusesDurableMessages() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            try await bob.subscribe("news")
            await expectBusError(.unavailable) { try await alice.send(to: .agent("bob"), ByteBuffer(), durable: true) }
            await expectBusError(.unavailable) { try await alice.publish(topic: "news", ByteBuffer(), durable: true) }
            await expectBusError(.unavailable) { try await alice.broadcast(ByteBuffer(), durable: true) }
            #expect(try await alice.send(to: .agent("bob"), ByteBuffer()).outcome == .delivered)
            await alice.close()
            await bob.close()
        }
    }

    @Test func aRequestOrAnUnknownFlagIsRefused() async throws {
        try await TestBus.with { bus in
            var alice = try await RawAgent.connect(port: bus.port, token: try await bus.token("alice"), version: 1)
            _ = try await bus.client("bob")
            let payload = ByteBuffer(string: "x")
            try await alice.connection.send(
                .request(
                    Send(
                        ref: 1, target: .agent("bob"), deadline: WallClock.nowMs() + 5_000, payload: payload,
                        flags: .durable)))
            try await alice.connection.send(
                .send(Send(ref: 2, target: .agent("bob"), payload: payload, flags: MessageFlags(rawValue: 2))))
            try await alice.connection.send(
                .publish(Fanout(ref: 3, topic: "t", payload: payload, flags: MessageFlags(rawValue: 0x80))))
            for ref in UInt64(1)...3 {
                guard case .error(let refusal) = try await alice.connection.read() else {
                    Issue.record("ref \(ref) was not refused")
                    continue
                }
                #expect(refusal.ref == ref && refusal.error.code == .invalidArgument, "\(refusal.error)")
            }
            await alice.connection.close()
        }
    }
}
