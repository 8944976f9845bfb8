import ACBClient
import Actors
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

@testable import Persistence

extension SidecarTests {
    /// Messages to offline agents, kept in PostgreSQL until acknowledged.
    @Suite struct DurableDeliveryTests {
        @Test func aSendToAnOfflineAgentIsQueuedThenDeliveredInOrderWhenItConnects() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                try await Self.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                for index in 0..<5 {
                    let ok = try await alice.send(to: .agent("bob"), ByteBuffer(string: "m\(index)"))
                    #expect(ok.outcome == .queued && ok.recipients == 1)
                }
                #expect(try Self.statuses(tenant) == Array(repeating: "queued", count: 5))

                let bob = try await bus.client("bob", tenant: tenant)
                var deliveries = bob.deliveries.makeAsyncIterator()
                for index in 0..<5 {
                    let delivery = try await deliveries.take()
                    #expect(delivery.text == "m\(index)" && delivery.frame.from == "alice")
                    delivery.ack()
                }
                try await Sidecars.eventually("the acknowledgements to be stored") {
                    try Self.statuses(tenant) == Array(repeating: "acked", count: 5)
                }
                await alice.close()
                await bob.close()
            }
        }

        @Test func aSendWhileTheReceiverReadsItsBacklogBackQueuesBehindIt() async throws {
            let tenant = TestBus.freshTenant()
            // Pages of 50: the backlog of 200 takes four round trips to the store.
            try await TestBus.withSidecars({ $0.supervisor.mailboxCapacity = 50 }) { bus in
                try await Self.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                for index in 0..<200 { try await alice.send(to: .agent("bob"), ByteBuffer(string: "stored \(index)")) }
                let bob = try await bus.client("bob", tenant: tenant)
                try await alice.send(to: .agent("bob"), ByteBuffer(string: "sent after"))
                var deliveries = bob.deliveries.makeAsyncIterator()
                var texts: [String] = []
                for _ in 0...200 {
                    let delivery = try await deliveries.take()
                    texts.append(delivery.text)
                    delivery.ack()
                }
                #expect(texts == (0..<200).map { "stored \($0)" } + ["sent after"])
                await alice.close()
                await bob.close()
            }
        }

        /// A sender that starts the moment its receiver connects, while the receiver's backlog
        /// (`backlog` messages, pages of 50) is read back: its first sends are stored behind the
        /// backlog, the later ones delivered at once, and none of those may overtake a stored one,
        /// however the store's commits and reads interleave with them. It sends 10 at a time, each
        /// batch once the bus read the last (not waiting for their answers), so that its sends go on
        /// across the end of the backlog; five rounds, as that end falls in a different place each
        /// time. (A send refused because bob's mailbox was full is not delivered at all.)
        @Test(arguments: [0, 20])
        func sendsRightAfterTheReceiverConnectsArriveInSendOrder(backlog: Int) async throws {
            try await TestBus.withSidecars({ $0.supervisor.mailboxCapacity = 50 }) { bus in
                for _ in 0..<5 {
                    let tenant = TestBus.freshTenant()
                    try await Self.registerOffline("bob", tenant: tenant, on: bus)
                    var alice = try await bus.raw()
                    #expect(try await alice.hello(try await bus.token("alice", tenant: tenant)) != nil)
                    let stored = (0..<backlog).map { "stored \($0)" }
                    #expect(try await Self.send(stored, from: &alice).allSatisfy { $0 == .queued })

                    let bob = try await bus.client("bob", tenant: tenant)
                    async let received = Self.texts(to: bob, through: "end")
                    let live = (0..<3_000).map { "m\($0)" }
                    let outcomes = try await Self.send(live, from: &alice, firstRef: UInt64(backlog), batch: 10)
                    var end: Outcome?
                    while end == nil { end = try await Self.send(["end"], from: &alice, firstRef: 1 << 32)[0] }
                    let accepted = stored + zip(live, outcomes).compactMap { $1 == nil ? nil : $0 } + ["end"]
                    let texts = try await received
                    let overtaken = accepted.indices.first { $0 >= texts.count || texts[$0] != accepted[$0] }
                    let queued = outcomes.filter { $0 == .queued }.count
                    #expect(
                        overtaken == nil,
                        "at \(overtaken ?? 0): \(texts[(overtaken ?? 0)...].prefix(3)) (\(queued) of \(live.count) queued)"
                    )
                    await alice.close()
                    await bob.close()
                }
            }
        }

        /// The texts of what `client` receives (acknowledging each), up to `last`.
        static func texts(to client: ACBClient, through last: String) async throws -> [String] {
            var inbox = client.deliveries.makeAsyncIterator()
            var texts: [String] = []
            while texts.last != last {
                let delivery = try await inbox.take()
                texts.append(delivery.text)
                delivery.ack()
            }
            return texts
        }

        /// Sends `payloads` to bob, `batch` at a time: each batch once the bus has read the one before
        /// (a PING behind it is answered), without waiting for their answers.
        /// - Returns: the outcome of each, nil for a refusal.
        static func send(
            _ payloads: [String], from sender: inout RawConnection, firstRef: UInt64 = 0, batch: Int = .max
        ) async throws -> [Outcome?] {
            var outcomes: [UInt64: Outcome?] = [:]
            var waitingFor: UInt64?  // the PING of the batch just sent
            func readAnswer() async throws {
                switch try await sender.read() {
                case .ok(let ok): outcomes[ok.ref] = ok.outcome
                case .error(let error): outcomes[error.ref] = .some(nil)
                case .pong(let pong) where pong.ref == waitingFor: waitingFor = nil
                case let other: throw BusError(.badFrame, "unexpected \(String(describing: other))")
                }
            }
            for start in stride(from: 0, to: payloads.count, by: batch) {
                var frames = ByteBuffer()
                for index in start..<min(start + batch, payloads.count) {
                    let ref = firstRef + UInt64(index) + 1
                    Frame.send(Send(ref: ref, target: .agent("bob"), payload: ByteBuffer(string: payloads[index])))
                        .encode(into: &frames)
                }
                waitingFor = UInt64(start)
                Frame.ping(RefOnly(ref: UInt64(start))).encode(into: &frames)
                try await sender.send(frames)
                while waitingFor != nil { try await readAnswer() }
            }
            while outcomes.count < payloads.count { try await readAnswer() }
            return payloads.indices.map { outcomes[firstRef + UInt64($0) + 1] ?? nil }
        }

        @Test func theRegistryAndTheBacklogSurviveARestartOfTheBus() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                try await Self.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "kept")).outcome == .queued)
                await alice.close()
            }
            try await TestBus.withSidecars { bus in
                let alice = try await bus.client("alice", tenant: tenant)
                let agents = try await alice.discover(status: .offline).agents
                #expect(agents.map(\.agentID) == ["bob"] && agents.first?.description.agentType == "worker")
                let bob = try await bus.client("bob", tenant: tenant)
                var deliveries = bob.deliveries.makeAsyncIterator()
                let delivery = try await deliveries.take()
                #expect(delivery.text == "kept")
                delivery.ack()
                await alice.close()
                await bob.close()
            }
        }

        /// REGISTER and UNREGISTER are answered once their row is committed: a registration the
        /// agent was told about survives a SIGKILL right after.
        @Test func aRegistrationAnsweredOKIsInPostgreSQLAndSurvivesAKill() async throws {
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            func rows() throws -> [String] {
                let rows = try Sidecars.query("SELECT agent_id FROM agents WHERE tenant_id = $1 ORDER BY 1", [tenant])
                return (0..<rows.count).map { rows.string($0, 0) }
            }
            let bus = try await BusProcess.start(spool: spool)
            defer { bus.kill() }
            let bob = try await bus.client("bob", tenant: tenant)
            try await bob.register(AgentDescription(agentType: "worker", capabilities: []))
            #expect(try rows() == ["bob"], "committed before OK")
            let carol = try await bus.client("carol", tenant: tenant)
            try await carol.register(AgentDescription(agentType: "worker", capabilities: []))
            try await carol.unregister()
            #expect(try rows() == ["bob"], "the removal committed before OK")
            bus.kill()
            await bob.close()
            await carol.close()

            let restarted = try await BusProcess.start(spool: spool)
            defer { restarted.kill() }
            let alice = try await restarted.client("alice", tenant: tenant)
            #expect(try await alice.discover().agents.map(\.agentID) == ["bob"])
            await alice.close()
        }

        @Test func aStoredMessagePastItsDeadlineIsDeadLetteredWithTheReason() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                try await Self.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                let ok = try await alice.send(
                    to: .agent("bob"), ByteBuffer(string: "late"), deadline: WallClock.nowMs() + 300)
                #expect(ok.outcome == .queued)
                try await Sidecars.eventually("the dead letter") {
                    try Sidecars.query(
                        "SELECT reason FROM dead_letters WHERE tenant_id = $1 AND to_agent = 'bob'", [tenant]
                    ).count == 1
                }
                let letter = try Sidecars.query(
                    "SELECT reason, from_agent, payload FROM dead_letters WHERE tenant_id = $1", [tenant])
                #expect(letter.string(0, 0) == "deadline_exceeded" && letter.string(0, 1) == "alice")
                #expect(letter.string(0, 2) == "late")
                #expect(try Self.statuses(tenant) == ["dead_lettered"])
                await alice.close()
            }
        }

        @Test func aStoredMessageRefusedOnEveryAttemptIsDeadLettered() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars({ $0.supervisor.maxDeliveryAttempts = 2 }) { bus in
                try await Self.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "poison")).outcome == .queued)
                var bob = try await bus.raw()
                _ = try await bob.hello(try await bus.token("bob", tenant: tenant))
                for attempt in 1...2 as ClosedRange<UInt16> {
                    guard case .deliver(let delivery) = try await bob.read() else { Issue.record("no DELIVER"); return }
                    #expect(delivery.attempt == attempt)
                    try await bob.send(.nack(Ack(deliveryID: delivery.deliveryID)))
                }
                try await Sidecars.eventually("the dead letter") { try Self.statuses(tenant) == ["dead_lettered"] }
                let letter = try Sidecars.query(
                    "SELECT reason, attempts FROM dead_letters WHERE tenant_id = $1", [tenant])
                #expect(letter.string(0, 0) == "rejected" && letter.integer(0, 1) == 2)
                await alice.close()
                await bob.close()
            }
        }

        @Test func migrationsApplyOnceToAnEmptyDatabaseAndTheBusRefusesAnOlderSchema() async throws {
            let base = try Sidecars.postgres()
            let name = "acb_migrate_\(UUID().uuidString.prefix(8).lowercased())"
            _ = try Sidecars.query("CREATE DATABASE \(name)")
            defer { _ = try? Sidecars.query("DROP DATABASE \(name)") }
            let url = base.replacingOccurrences(of: "/acb", with: "/\(name)")

            // An empty database: the bus will not run on it, and says what to do.
            do {
                _ = try PostgresStore.open(url: url)
                Issue.record("expected the schema check to refuse")
            } catch {
                #expect(error.message.contains("run `acb migrate`") && !error.connectionLost)
            }
            let migrator = try Migrator(directory: "\(Sidecars.root)/migrations")
            #expect(try migrator.apply(url: url).map(\.version) == [1, 2, 3, 4, 5, 6])
            #expect(try migrator.apply(url: url).isEmpty)
            let tables = try PostgresConnection(url: url).query(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            #expect(
                (0..<tables.count).map { tables.string($0, 0) }
                    == [
                        "agent_credentials", "agent_keys", "agents", "audit_log", "context_homes", "context_versions",
                        "dead_letters",
                        "messages", "schema_migrations", "tenants",
                    ])
            #expect(try PostgresStore.open(url: url).agents.isEmpty)
            #expect(migrator.latestVersion == PostgresStore.schemaVersion)
        }

        /// Registers `agent` and disconnects it, so sends to it are queued.
        static func registerOffline(_ agent: String, tenant: String, on bus: some BusEndpoint) async throws {
            let client = try await bus.client(agent, tenant: tenant)
            try await client.register(AgentDescription(agentType: "worker", capabilities: ["work"]))
            await client.close()
            let observer = try await bus.client("observer-\(agent)", tenant: tenant)
            // The session retires a moment after the close: until then a send would find it online.
            while try await observer.discover(status: .offline).agents.contains(where: { $0.agentID == agent }) == false
            {
                try await Task.sleep(for: .milliseconds(20))
            }
            await observer.close()
        }

        /// A stored message already handed out as often as allowed (by buses killed before it was
        /// settled) is dead-lettered when read back, not delivered once more.
        @Test func aStoredMessageOutOfAttemptsIsDeadLetteredWhenReadBack() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                try await Self.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "poison")).outcome == .queued)
                #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "fine")).outcome == .queued)
                _ = try Sidecars.query(
                    """
                    UPDATE messages SET status = 'delivered', attempts = 5
                    WHERE id = (SELECT min(id) FROM messages WHERE tenant_id = $1)
                    """, [tenant])
                let bob = try await bus.client("bob", tenant: tenant)
                var inbox = bob.deliveries.makeAsyncIterator()
                #expect(try await inbox.take().text == "fine", "the spent message is not delivered")
                let letter = await bus.audit.first { $0.kind == "message.dead_lettered" && $0.tenant == tenant }
                #expect(letter.detail["reason"] == "unavailable" && letter.detail["attempts"] == "5")
                try await Sidecars.eventually("the dead letter to be stored") {
                    try Self.statuses(tenant).first == "dead_lettered"
                }
                await alice.close()
                await bob.close()
            }
        }

        /// The statuses of the tenant's stored messages, oldest first.
        static func statuses(_ tenant: String) throws -> [String] {
            let rows = try Sidecars.query("SELECT status FROM messages WHERE tenant_id = $1 ORDER BY id", [tenant])
            return (0..<rows.count).map { rows.string($0, 0) }
        }
    }
}
