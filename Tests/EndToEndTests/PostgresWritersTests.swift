import Bus
import NIOConcurrencyHelpers
import Testing

@testable import Persistence

extension SidecarTests {
    /// The PostgreSQL store's writers apply batches side by side (``PostgresStore/Settings/writers``):
    /// what needs order still lands in the order it was asked for.
    @Suite struct PostgresWritersTests {
        /// The first writer is held up, the second takes messages stored as handed out and is held up
        /// in turn, and the release of those messages comes right behind. The first writer, free
        /// again, must not apply the release before the second's batch commits: the release would
        /// find no rows, and the messages would stay handed out, missing from the backlog.
        /// (Held up: the test's own transactions insert rows with the ids the writers insert, and
        /// PostgreSQL makes each writer wait for that transaction to end.)
        @Test func aReleaseWaitsForTheBatchOfAnotherWriterHoldingItsMessages() async throws {
            try await StoreFixture.with { fixture in
                let (store, url, tenant, answers) = (fixture.store, fixture.url, fixture.tenant, fixture.answers)
                let record = fixture.record
                #expect(store.children.map(\.current.name) == ["postgres", "postgres-2"])
                let (held, released) = (fixture.firstID, Array(fixture.firstID + 1...fixture.firstID + 50))
                func enqueue(_ ids: [UInt64], to receiver: String) {
                    for id in ids { fixture.enqueue(id, to: receiver, handedOut: true) }
                }
                func hold(_ id: UInt64) throws -> PostgresConnection {
                    let connection = try PostgresConnection(url: url)
                    try connection.execute("BEGIN")
                    try connection.query(
                        """
                        INSERT INTO messages (id, tenant_id, to_agent, from_agent, kind, expires_at, payload)
                        VALUES ($1::bigint, $2, 'holder', 'test', 0, now(), '')
                        """, [.text("\(id)"), .text(tenant)])
                    return connection
                }
                func writersWaiting() throws -> Int {
                    let rows = try Sidecars.query(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%COPY messages%'"
                    )
                    return Int(rows.integer(0, 0))
                }
                try await Sidecars.eventually("the store to connect") { store.isConnected }

                let holdingFirst = try hold(held)
                enqueue([held], to: "busy")
                try await Sidecars.eventually("the first writer to wait on the held id") { try writersWaiting() == 1 }
                let holdingSecond = try hold(released[0])
                enqueue(released, to: "receiver")
                try await Sidecars.eventually("the second writer to wait too") { try writersWaiting() == 2 }
                store.release(released, done: record)
                let agent = AgentKey(tenant: tenant, agentID: "agent")
                store.saveAgent(agent, AgentDescription(agentType: "first", capabilities: []), done: record)
                store.saveAgent(agent, nil, done: record)
                store.saveAgent(agent, AgentDescription(agentType: "last", capabilities: []), done: record)
                try holdingFirst.execute("ROLLBACK")
                // Time for the first writer to take the release (and, were it not to wait, to apply it).
                try await Task.sleep(for: .milliseconds(200))
                try holdingSecond.execute("ROLLBACK")
                try await Sidecars.eventually("every write to commit") {
                    answers.withLockedValue { $0.count } == released.count + 5
                }

                let backlog = try await withCheckedThrowingContinuation { continuation in
                    store.backlog(of: AgentKey(tenant: tenant, agentID: "receiver"), resuming: false, limit: 100) {
                        continuation.resume(with: $0)
                    }
                }
                #expect(backlog.map(\.id) == released, "every released message is back in the backlog")
                let types = try Sidecars.query("SELECT agent_type FROM agents WHERE tenant_id = $1", [tenant])
                #expect((0..<types.count).map { types.string($0, 0) } == ["last"])
                #expect(answers.withLockedValue { $0.failures }.isEmpty)
            }
        }
    }
}
