import Bus
import Foundation
import Logging
import NIOConcurrencyHelpers

@testable import Persistence

/// A ``PostgresStore`` of a test's own on the test database (the sidecars' PostgreSQL), for tests of
/// the store below the bus: a scratch spool, a fresh tenant, message ids the bus never makes, and
/// the store's answers collected.
final class StoreFixture: Sendable {
    let store: PostgresStore
    let url: String
    let tenant = TestBus.freshTenant()
    /// The first of a run of ids the bus never makes (it stamps them with the time since 2026), so
    /// the test's rows do not clash with a bus's.
    let firstID = UInt64.random(in: 1...(1 << 40))
    /// The store's answers so far: how many, and the errors among them.
    let answers = NIOLockedValueBox<(count: Int, failures: [BusError])>((0, []))
    private let spool = Sidecars.scratch()

    /// Runs `body` with a store made with `configure`d settings, then closes it.
    static func with(
        _ configure: (inout PostgresStore.Settings) -> Void = { _ in }, _ body: (StoreFixture) async throws -> Void
    ) async throws {
        let fixture = try StoreFixture(configure)
        defer { fixture.close() }
        try await body(fixture)
    }

    private init(_ configure: (inout PostgresStore.Settings) -> Void) throws {
        url = try Sidecars.postgres()
        var settings = PostgresStore.Settings(url: url, spoolDirectory: spool)
        configure(&settings)
        store = try PostgresStore(settings: settings, logger: Logger(label: "acb-test"), audit: { _ in })
    }

    private func close() {
        store.close()
        try? FileManager.default.removeItem(atPath: spool)
    }

    /// Counts an answer of the store.
    var record: @Sendable (BusError?) -> Void {
        { [answers] error in
            answers.withLockedValue { answers in
                answers.count += 1
                if let error { answers.failures.append(error) }
            }
        }
    }

    /// Stores message `id` for `receiver` of the fixture's tenant, as handed out or waiting.
    func enqueue(_ id: UInt64, to receiver: String, handedOut: Bool) {
        store.enqueue(
            StoredMessage(
                id: id, tenant: tenant, to: receiver, from: "s", kind: .direct, subject: "", deadline: nil,
                expiresAt: WallClock.nowMs() + 600_000, payload: Array("m\(id)".utf8), idempotencyKey: "",
                handedOut: handedOut),
            done: record)
    }
}
