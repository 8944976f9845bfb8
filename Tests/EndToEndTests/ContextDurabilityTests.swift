import ACBClient
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

@testable import Persistence

extension SidecarTests {
    /// Contexts with PostgreSQL (and Redis): committed before the answer, read back after a
    /// restart or a SIGKILL, refused while PostgreSQL is away, mirrored to Redis.
    @Suite struct ContextDurabilityTests {
        @Test func contextsOutliveARestart() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                var alice = try await ContextPeer.connect(bus, "alice", tenant: tenant)
                _ = try await alice.put("doc", #"{"text":"a"}"#)
                _ = try await alice.write(.mergePatch, "doc", body: #"{"text":"b"}"#).get()
                // A parent's version is any from 1 to 2^63 - 1, kept exactly (not as a Double).
                let far = UInt64(Int64.max)
                _ = try await alice.put(
                    "summary", "{}",
                    parents: [ContextParent(id: "doc", version: 2), ContextParent(id: "far", version: far)])
                #expect(try await alice.write(.update, "doc", body: "{}", expected: 1).code == .versionConflict)
                await alice.close()
            }
            let rows = try Sidecars.query("SELECT count(*) FROM context_versions WHERE tenant_id = $1", [tenant])
            #expect(rows.integer(0, 0) == 3)
            try await TestBus.withSidecars { bus in
                var bob = try await ContextPeer.connect(bus, "bob", tenant: tenant)
                #expect(try await bob.body("doc") == #"{"text":"b"}"#)
                let history = try await bob.page { .contextHistory(ContextQuery(ref: $0, id: "doc")) }.get()
                #expect(history.heads.map(\.version) == [2, 1] && history.heads.map(\.revision) == [2, 1])
                let ancestors = try await bob.page { .contextLineage(ContextQuery(ref: $0, id: "summary")) }.get()
                #expect(ancestors.heads.map(\.id) == ["doc"])
                let summary = try await bob.page { .contextHistory(ContextQuery(ref: $0, id: "summary")) }.get()
                #expect(summary.heads.first?.attributes.parents.map(\.version) == [2, UInt64(Int64.max)])
                let watch = try await bob.watch("doc", start: .after, after: 1)
                let replayed = try await bob.nextEvents(1)
                #expect(replayed.map(\.head.version) == [2] && replayed.first?.watch == watch)
                // Versions and the tenant's revisions go on from where they were.
                var alice = try await ContextPeer.connect(bus, "alice", tenant: tenant)
                let next = try await alice.write(.put, "doc", body: #"{"text":"c"}"#).get()
                #expect(next.version == 3 && next.revision == 4 && next.owner == "alice")
                await alice.close()
                await bob.close()
            }
        }

        @Test func aLargeBodyOutlivesARestart() async throws {
            let tenant = TestBus.freshTenant()
            let body = ByteBuffer(bytes: (0..<(3 << 20) + 1).map { UInt8(truncatingIfNeeded: $0 &* 13) })
            try await TestBus.withSidecars { bus in
                let alice = try await bus.client("alice", tenant: tenant)
                try await alice.share("dataset", body)
                await alice.close()
            }
            try await TestBus.withSidecars { bus in
                let alice = try await bus.client("alice", tenant: tenant)
                let read = try await alice.get("dataset")
                #expect(read.body == body && read.head.size == UInt64(body.readableBytes))
                await alice.close()
            }
        }

        @Test func killingTheBusLosesNoAnsweredContextWrite() async throws {
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            let token = try await TokenAuthority(secret: BusProcess.secret).issue(
                Identity(tenant: tenant, agentID: "alice", roles: ["agent-full"]), ttl: 3600)
            let first = try await BusProcess.start(spool: spool)
            defer { first.kill() }
            var alice = try await ContextPeer.connect(port: first.port, token: token)
            for n in 1...50 {
                #expect(try await alice.write(.put, "counter", body: "\(n)").get().version == UInt64(n))
            }
            first.kill()
            await alice.close()
            let second = try await BusProcess.start(spool: spool)
            defer { second.kill() }
            var again = try await ContextPeer.connect(port: second.port, token: token)
            let current = try await again.get("counter").get()
            #expect(current.head.version == 50 && String(buffer: current.body) == "50")
            await again.close()
        }

        @Test func writesAreRefusedWhilePostgresIsAwayAndReadsGoOn() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars { bus in
                var alice = try await ContextPeer.connect(bus, "alice", tenant: tenant)
                _ = try await alice.put("plan", #"{"step":1}"#)
                try await SidecarFaultTests.during(outageOf: "postgres") {
                    // Never OK: the first write may find out that PostgreSQL is gone, the next ones know.
                    for _ in 0..<3 {
                        let refused = try await alice.write(.put, "plan", body: #"{"step":2}"#)
                        #expect(refused.code == .storageUnavailable)
                        if case .failure(let error) = refused { #expect(error.retryAfterMs > 0) }
                    }
                    #expect(try await alice.body("plan") == #"{"step":1}"#, "reads are served meanwhile")
                }
                try await Sidecars.eventually("PostgreSQL to take context writes again") {
                    try await alice.write(.put, "plan", body: #"{"step":2}"#).code == nil
                }
                #expect(try await alice.get("plan").get().head.version == 2, "refused writes left no version")
                await alice.close()
            }
            let rows = try Sidecars.query(
                "SELECT max(version) FROM context_versions WHERE tenant_id = $1 AND context_id = 'plan'", [tenant])
            #expect(rows.integer(0, 0) == 2)
        }

        @Test func smallContextsAreMirroredToRedis() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars(redis: true) { bus in
                var alice = try await ContextPeer.connect(bus, "alice", tenant: tenant)
                _ = try await alice.put("note", #"{"n":1}"#, ttlMs: 60_000)
                let url = try Sidecars.redis()
                try await Sidecars.eventually("the copy in Redis") {
                    try RedisState.context(url: url, tenant: tenant, id: "note")?.contains(#""version":1"#) ?? false
                }
                _ = try await alice.write(.delete, "note").get()
                try await Sidecars.eventually("the copy to go") {
                    try RedisState.context(url: url, tenant: tenant, id: "note") == nil
                }
                await alice.close()
            }
        }
    }
}
