import ACBClient
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

@testable import Persistence

extension SidecarTests {
    /// Presence, idempotency keys and upload progress in the real Redis.
    @Suite struct SharedStateTests {
        typealias Durable = SidecarTests.DurableDeliveryTests

        /// Arguments go to hiredis with their exact bytes: an embedded NUL is data (strdup's copy
        /// stopped at it while its length went on, reading past the copy).
        @Test func redisArgumentsKeepEmbeddedNULs() throws {
            let redis = try RedisConnection(url: try Sidecars.redis())
            let key = "acb:test:\(UUID().uuidString)\u{0}tail"
            #expect(try redis.command("SET", key, "a\u{0}b", "PX", "60000") == .status("OK"))
            #expect(try redis.command("GET", key) == .string([0x61, 0, 0x62]))
            #expect(try redis.command("STRLEN", key) == .integer(3))
        }

        @Test func presenceFollowsTheSessionAndIdempotencyKeysSurviveARestart() async throws {
            let tenant = TestBus.freshTenant()
            let redis = try RedisConnection(url: try Sidecars.redis())
            try await TestBus.withSidecars(redis: true) { bus in
                try await Durable.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                try await Sidecars.eventually("alice's presence") {
                    try redis.command("PTTL", "acb:presence:\(tenant)/alice") != .integer(-2)
                }
                guard case .integer(let ttl) = try redis.command("PTTL", "acb:presence:\(tenant)/alice") else {
                    Issue.record("no presence TTL"); return
                }
                #expect(ttl > 0 && ttl <= 15_000)
                #expect(
                    try await alice.send(to: .agent("bob"), ByteBuffer(string: "once"), idempotencyKey: "k").outcome
                        == .queued)
                await alice.close()
                try await Sidecars.eventually("alice's presence to go") {
                    try redis.command("EXISTS", "acb:presence:\(tenant)/alice") == .integer(0)
                }
            }
            // A new bus: the retried send is answered from the key Redis kept, not stored again.
            try await TestBus.withSidecars(redis: true) { bus in
                let alice = try await bus.client("alice", tenant: tenant)
                #expect(
                    try await alice.send(to: .agent("bob"), ByteBuffer(string: "once"), idempotencyKey: "k").outcome
                        == .queued)
                await alice.close()
            }
            #expect(try Durable.statuses(tenant) == ["queued"])
        }

        @Test func uploadProgressIsKeptWhileTheUploadCanResume() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars(postgres: false, redis: true) { bus in
                let alice = try await bus.client("alice", tenant: tenant)
                let bob = try await bus.client("bob", tenant: tenant)
                let payload = ByteBuffer(repeating: 1, count: 3 << 20)
                try await alice.upload(to: .agent("bob"), from: BufferSource(payload), streamID: "s-1")
                let redis = try RedisConnection(url: try Sidecars.redis())
                try await Sidecars.eventually("the progress in Redis") {
                    try redis.command("HGET", "acb:upload:\(tenant)/alice/s-1", "chunks").text == "3"
                }
                #expect(try redis.command("HGET", "acb:upload:\(tenant)/alice/s-1", "total").text == "\(3 << 20)")
                await alice.close()
                await bob.close()
            }
        }
    }
}
