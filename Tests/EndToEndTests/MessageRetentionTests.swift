import Bus
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

@testable import Persistence

extension SidecarTests {
    /// Settled messages leave PostgreSQL once their retention has passed (`--message-retention-hours`),
    /// so the table of stored messages does not grow for ever; messages still waiting stay.
    @Suite struct MessageRetentionTests {
        @Test func settledMessagesPastTheirRetentionAreDeletedAndWaitingOnesStay() async throws {
            let url = try Sidecars.postgres()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            var settings = PostgresStore.Settings(url: url, spoolDirectory: spool)
            settings.retentionMs = 86_400_000
            settings.sweepMs = 50
            let store = try PostgresStore(settings: settings, logger: Logger(label: "acb-test"), audit: { _ in })
            defer { store.close() }
            let tenant = TestBus.freshTenant()
            // Ids the bus never makes (it stamps them with the time since 2026): no clash with its rows.
            let first = UInt64.random(in: 1...(1 << 40))
            let (acked, dead, waiting) = (first, first + 1, first + 2)
            let answers = NIOLockedValueBox<[BusError?]>([])
            for (id, handedOut) in [(acked, true), (dead, true), (waiting, false)] {
                store.enqueue(
                    StoredMessage(
                        id: id, tenant: tenant, to: "bob", from: "alice", kind: .direct, subject: "", deadline: nil,
                        expiresAt: WallClock.nowMs() + 600_000, payload: Array("m\(id)".utf8), idempotencyKey: "",
                        handedOut: handedOut)
                ) { error in answers.withLockedValue { $0.append(error) } }
            }
            try await Sidecars.eventually("the messages to be stored") { answers.withLockedValue { $0.count } == 3 }
            #expect(answers.withLockedValue { $0 }.allSatisfy { $0 == nil })
            store.settle(acked, attempts: 1, deadLetterReason: nil)
            store.settle(dead, attempts: 5, deadLetterReason: .unavailable)
            func rows() throws -> [String] {
                let rows = try Sidecars.query(
                    "SELECT id::text || ' ' || status FROM messages WHERE tenant_id = $1 ORDER BY id", [tenant])
                return (0..<rows.count).map { rows.string($0, 0) }
            }
            try await Sidecars.eventually("both to be settled") {
                try rows() == ["\(acked) acked", "\(dead) dead_lettered", "\(waiting) queued"]
            }
            // Settled (and made) two days ago, as far as the sweep can tell; still there within a day.
            _ = try Sidecars.query(
                "UPDATE messages SET updated_at = now() - interval '2 days' WHERE tenant_id = $1", [tenant])
            try await Sidecars.eventually("the settled ones to be deleted") { try rows() == ["\(waiting) queued"] }
            // The dead letter stays, no longer pointing at a row.
            let letters = try Sidecars.query(
                "SELECT coalesce(message_id::text, 'none') FROM dead_letters WHERE tenant_id = $1", [tenant])
            #expect((0..<letters.count).map { letters.string($0, 0) } == ["none"])
        }
    }
}
