import ACBClient
import Actors
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

@testable import Persistence

extension SidecarTests {
    /// Sidecars that go away and come back, and a bus that is killed: nothing acknowledged is lost.
    @Suite struct SidecarFaultTests {
        typealias Durable = SidecarTests.DurableDeliveryTests

        @Test func postgresLostMidTrafficSpoolsTheWritesAndAppliesThemInOrderWhenBack() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                try await Durable.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                let carol = try await bus.client("carol", tenant: tenant)
                try await Self.during(outageOf: "postgres") { () async throws in
                    for index in 0..<20 {
                        #expect(
                            try await alice.send(to: .agent("bob"), ByteBuffer(string: "m\(index)")).outcome == .queued)
                    }
                    // Routing between online agents goes on.
                    #expect(try await alice.send(to: .agent("carol"), ByteBuffer(string: "live")).outcome == .delivered)
                    var live = carol.deliveries.makeAsyncIterator()
                    #expect(try await live.take().text == "live")
                    #expect(bus.server.store?.isConnected == false && (bus.server.store?.spooledBytes ?? 0) > 0)
                }
                try await Sidecars.eventually("the spool to be applied") {
                    bus.server.store?.isConnected == true && bus.server.store?.spooledBytes == 0
                }
                #expect(try Durable.statuses(tenant) == Array(repeating: "queued", count: 20))
                try await Self.expectBacklog(of: "bob", tenant: tenant, on: bus, (0..<20).map { "m\($0)" })
                await alice.close()
                await carol.close()
            }
        }

        @Test func aBusStartedWhilePostgresIsDownRunsDegradedAndCatchesUp() async throws {
            let tenant = TestBus.freshTenant()
            _ = try Sidecars.postgres()  // migrated while it is up
            try await Sidecars.control("kill", "postgres")
            do {
                try await TestBus.withSidecars { bus in
                    #expect(bus.server.store?.isConnected == false)
                    // The thread that reads the registry once PostgreSQL is back is supervised too.
                    let restorer = try #require(bus.server.children.first { $0.name == "registry-restorer" })
                    restorer.injectFaults(2)
                    try await Durable.registerOffline("bob", tenant: tenant, on: bus)
                    let alice = try await bus.client("alice", tenant: tenant)
                    #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "waited")).outcome == .queued)
                    try await Sidecars.control("start", "postgres")
                    try await Sidecars.eventually("PostgreSQL to be connected") {
                        bus.server.store?.isConnected == true && bus.server.store?.spooledBytes == 0
                    }
                    try await Sidecars.eventually("the registry to be read") { restorer.current.state == .stopped }
                    #expect(restorer.current.restarts == 2)
                    try await Self.expectBacklog(of: "bob", tenant: tenant, on: bus, ["waited"])
                    await alice.close()
                }
            } catch {
                try? await Sidecars.control("start", "postgres")
                throw error
            }
        }

        /// A bus restarted while PostgreSQL is down knows its agents from the registry's local
        /// snapshot: a registered, offline agent gets its messages queued, and an agent it does not
        /// know is `storage_unavailable` (it may exist), not `unknown_agent`, until PostgreSQL is read.
        @Test func aBusRestartedWhilePostgresIsDownKnowsItsAgents() async throws {
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            let url = try Sidecars.postgres()
            let sameSpool: (inout ServerConfiguration) -> Void = {
                $0.postgresURL = url
                $0.spoolDirectory = spool
            }
            try await TestBus.with(sameSpool) { bus in
                try await Durable.registerOffline("bob", tenant: tenant, on: bus)
                try await Durable.registerOffline("carol", tenant: tenant, on: bus)
            }
            // Gone from PostgreSQL, still in the snapshot (as after an unregistration the snapshot missed).
            _ = try Sidecars.query("DELETE FROM agents WHERE tenant_id = $1 AND agent_id = 'carol'", [tenant])
            try await Sidecars.control("kill", "postgres")
            do {
                try await TestBus.with(sameSpool) { bus in
                    #expect(bus.server.store?.isConnected == false)
                    let alice = try await bus.client("alice", tenant: tenant)
                    #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "kept")).outcome == .queued)
                    let carol = AgentKey(tenant: tenant, agentID: "carol")
                    #expect(bus.server.supervisor.registry.isRegistered(carol), "from the snapshot, for now")
                    let maybe = await expectBusError(.storageUnavailable) {
                        _ = try await alice.send(to: .agent("nobody"), ByteBuffer(string: "?"))
                    }
                    #expect((maybe?.retryAfterMs ?? 0) > 0)
                    try await Sidecars.control("start", "postgres")
                    try await Sidecars.eventually("the registry to be read from PostgreSQL") {
                        bus.server.supervisor.registry.isComplete
                    }
                    await expectBusError(.unknownAgent) {
                        _ = try await alice.send(to: .agent("nobody"), ByteBuffer(string: "?"))
                    }
                    #expect(
                        !bus.server.supervisor.registry.isRegistered(carol), "PostgreSQL's word replaces the snapshot's"
                    )
                    try await Sidecars.eventually("the spool to be applied") {
                        bus.server.store?.isConnected == true && bus.server.store?.spooledBytes == 0
                    }
                    try await Self.expectBacklog(of: "bob", tenant: tenant, on: bus, ["kept"])
                    await alice.close()
                }
            } catch {
                try? await Sidecars.control("start", "postgres")
                throw error
            }
        }

        @Test func aFullSpoolRefusesDurableSendsWithStorageUnavailable() async throws {
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            try await TestBus.with({
                $0.postgresURL = "postgresql://postgres@127.0.0.1:1/acb?connect_timeout=1"  // nothing listens there
                $0.spoolDirectory = spool
                $0.spoolBytes = 4_096
            }) { bus in
                try await Durable.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                var queued = 0
                let refusal = await expectBusError(.storageUnavailable) {
                    for _ in 0..<100 {
                        try await alice.send(to: .agent("bob"), ByteBuffer(repeating: 7, count: 100))
                        queued += 1
                    }
                }
                #expect(queued > 0 && queued < 100)
                #expect((refusal?.retryAfterMs ?? 0) > 0)
                #expect((bus.server.store?.spooledBytes ?? .max) <= 4_096)
                await alice.close()
            }
        }

        @Test func theAuditStreamLosesNothingWhileTheBrokerIsDown() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars(postgres: false, kafka: true) { bus in
                try await Self.during(outageOf: "kafka") { () async throws in
                    let alice = try await bus.client("alice", tenant: tenant)
                    try await alice.register(AgentDescription(agentType: "auditor", capabilities: []))
                    await alice.close()
                }
                try await Sidecars.eventually("the journal to drain") { bus.server.auditStream?.pendingBytes == 0 }
            }
            // Read to the end: after an outage the relay produces again, so records may come twice.
            let records = try await Sidecars.kafkaRecords(
                topic: AuditRecord.topic(tenant: tenant), count: 1_000, timeout: 5)
            let kinds = records.compactMap { ($0["record"] as? [String: Any])?["kind"] as? String }
            #expect(Set(kinds) == ["security.authenticated", "session.opened", "agent.registered", "session.closed"])
        }

        @Test func redisLostMidTrafficKeepsTheIdempotencyKeysAndWritesThemWhenBack() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars(redis: true) { bus in
                try await Durable.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                try await Self.during(outageOf: "redis") { () async throws in
                    try await alice.send(to: .agent("bob"), ByteBuffer(string: "once"), idempotencyKey: "k-1")
                    try await Sidecars.eventually("the key to be spooled") { bus.server.shared?.isConnected == false }
                }
                try await Sidecars.eventually("the key to reach Redis") {
                    let redis = try RedisConnection(url: try Sidecars.redis())
                    return try redis.command("GET", "acb:idem:\(tenant)/alice/k-1").text == "ok:2:1"
                }
                await alice.close()
            }
        }

        @Test func killingTheBusLosesNoQueuedMessageAndNoAcknowledgedAuditEvent() async throws {
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            let bus = try await Self.queueAndKill(50, tenant: tenant, spool: spool)
            defer { bus.kill() }
            try await Self.expectBacklog(of: "bob", tenant: tenant, on: bus, (0..<50).map { "m\($0)" })
            // Every send that heard "queued" has its audit record: the journal outlived the process.
            // More than the topic holds, so the reader takes everything there within its timeout
            // (partitions are read in no particular order, and a record may come twice).
            let records = try await Sidecars.kafkaRecords(
                topic: AuditRecord.topic(tenant: tenant), count: 1_000, timeout: 8)
            let queued = records.compactMap { $0["record"] as? [String: Any] }.filter {
                $0["kind"] as? String == "message.queued"
            }
            #expect(Set(queued.compactMap { ($0["detail"] as? [String: String])?["message"] }).count == 50)
        }

        @Test func killingTheBusWhilePostgresIsDownLosesNoSpooledMessage() async throws {
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            // Only the spool has them when the bus dies: PostgreSQL comes back after.
            let bus = try await Self.queueAndKill(20, tenant: tenant, spool: spool, outageOf: "postgres")
            defer { bus.kill() }
            try await Sidecars.eventually("the spool to be applied") { try Durable.statuses(tenant).count == 20 }
            try await Self.expectBacklog(of: "bob", tenant: tenant, on: bus, (0..<20).map { "m\($0)" })
        }

        /// Runs `acb serve` with bob registered and offline, has alice send him `count` messages
        /// (`m0`, `m1`, …), each answered `queued`, and kills the process with SIGKILL (while
        /// `sidecar` is down, if one is named). - Returns: a new `acb serve` on the same spool.
        static func queueAndKill(_ count: Int, tenant: String, spool: String, outageOf sidecar: String? = nil)
            async throws -> BusProcess
        {
            let bus = try await BusProcess.start(spool: spool)
            defer { bus.kill() }
            try await Durable.registerOffline("bob", tenant: tenant, on: bus)
            let alice = try await bus.client("alice", tenant: tenant)
            let sendThenKill = { () async throws in
                for index in 0..<count {
                    #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "m\(index)")).outcome == .queued)
                }
                bus.kill()
            }
            if let sidecar { try await during(outageOf: sidecar, sendThenKill) } else { try await sendThenKill() }
            await alice.close()
            return try await BusProcess.start(spool: spool)
        }

        /// Kills `sidecar`, runs `body`, and starts it again whatever happened.
        static func during(outageOf sidecar: String, _ body: () async throws -> Void) async throws {
            try await Sidecars.control("kill", sidecar)
            do {
                try await body()
            } catch {
                try? await Sidecars.control("start", sidecar)
                throw error
            }
            try await Sidecars.control("start", sidecar)
        }

        /// Connects `agent` and expects its backlog, in order, acknowledging each.
        static func expectBacklog(of agent: String, tenant: String, on bus: some BusEndpoint, _ texts: [String])
            async throws
        {
            let client = try await bus.client(agent, tenant: tenant)
            var deliveries = client.deliveries.makeAsyncIterator()
            for text in texts {
                let delivery = try await deliveries.take()
                #expect(delivery.text == text)
                delivery.ack()
            }
            await client.close()
        }
    }
}
