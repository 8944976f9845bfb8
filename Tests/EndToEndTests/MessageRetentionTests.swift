import Bus
import NIOConcurrencyHelpers
import Testing

@testable import Persistence

extension SidecarTests {
    /// Settled messages leave PostgreSQL once their retention has passed (`--message-retention-hours`),
    /// so the table of stored messages does not grow for ever; messages still waiting stay.
    @Suite struct MessageRetentionTests {
        @Test func settledMessagesPastTheirRetentionAreDeletedAndWaitingOnesStay() async throws {
            try await StoreFixture.with({
                $0.retentionMs = 86_400_000
                $0.sweepMs = 50
            }) { fixture in
                let (store, tenant) = (fixture.store, fixture.tenant)
                let (acked, dead, waiting) = (fixture.firstID, fixture.firstID + 1, fixture.firstID + 2)
                for (id, handedOut) in [(acked, true), (dead, true), (waiting, false)] {
                    fixture.enqueue(id, to: "bob", handedOut: handedOut)
                }
                try await Sidecars.eventually("the messages to be stored") {
                    fixture.answers.withLockedValue { $0.count } == 3
                }
                #expect(fixture.answers.withLockedValue { $0.failures }.isEmpty)
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
}
