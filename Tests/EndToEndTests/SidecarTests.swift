import Foundation
import Gateway
import Testing

/// Everything that talks to the real sidecars (PostgreSQL, Redis, the Kafka-protocol broker),
/// one test at a time: some of them stop and restart the sidecars.
@Suite(.serialized, .timeLimit(.minutes(3))) struct SidecarTests {}

extension TestBus {
    /// A tenant of its own, so tests sharing the sidecars' data never see each other's.
    static func freshTenant() -> String { "t-\(UUID().uuidString.prefix(8).lowercased())" }

    /// A server wired to the sidecars `make test` started, with a spool folder of its own.
    static func withSidecars(
        postgres: Bool = true, redis: Bool = false, kafka: Bool = false, spool: String = Sidecars.scratch(),
        _ configure: (inout ServerConfiguration) -> Void = { _ in },
        _ body: (TestBus) async throws -> Void
    ) async throws {
        let postgresURL = postgres ? try Sidecars.postgres() : nil
        let redisURL = redis ? try Sidecars.redis() : nil
        let kafkaBrokers = kafka ? try Sidecars.kafka() : nil
        defer { try? FileManager.default.removeItem(atPath: spool) }
        try await with(
            {
                $0.postgresURL = postgresURL
                $0.redisURL = redisURL
                $0.kafkaBrokers = kafkaBrokers
                $0.spoolDirectory = spool
                configure(&$0)
            }, body)
    }
}
