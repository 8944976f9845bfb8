import ACBClient
import Actors
import Bus
import Foundation
import Gateway
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// A real server on a free port for one test, with helpers that hand back connected clients.
struct TestBus {
    let server: BusServer
    /// Every audit event of the server, to wait for (unless the test writes them to a file).
    let audit: AuditRecorder
    static let secret = String(repeating: "test-secret-", count: 3)

    var port: Int { server.port }

    /// Runs `body` against a fresh server, then shuts the server down gracefully.
    /// - Parameter logger: the server's log; by default standard error, at `ACB_TEST_LOG_LEVEL`.
    static func with(
        _ configure: (inout ServerConfiguration) -> Void = { _ in }, logger: Logger? = nil,
        _ body: (TestBus) async throws -> Void
    ) async throws {
        var configuration = ServerConfiguration(tokenSecret: secret)
        configuration.port = 0
        configuration.drainTimeout = .seconds(2)
        let scratch = NSTemporaryDirectory() + "acb-test-\(UUID().uuidString)"
        configuration.supervisor.streamDirectory = scratch
        // At the start of a test run every suite starts at once, and two cores stall for up to about
        // 20 s: a raw client that sends no heartbeats must not be taken for gone meanwhile (100 s
        // here, not 15), nor a connection whose HELLO is slow to be read or checked (100 s, not 10).
        // Tests of heartbeats and of the handshake set their own.
        configuration.supervisor.missedHeartbeats = 20
        configuration.handshakeTimeout = .seconds(100)
        configure(&configuration)
        let logger =
            logger
            ?? {
                var logger = Logger(label: "acb-test")
                // ACB_TEST_LOG_LEVEL=debug shows what the servers of the tests log.
                logger.logLevel =
                    ProcessInfo.processInfo.environment["ACB_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
                    ?? .error
                return logger
            }()
        let audit = AuditRecorder()
        let server = try await BusServer.start(
            configuration: configuration, logger: logger,
            audit: configuration.auditLogPath == nil && configuration.kafkaBrokers == nil ? audit : nil)
        let services: [any Service] = [server.admin as (any Service)?, server.listener].compactMap { $0 }
        let group = ServiceGroup(services: services, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body(TestBus(server: server, audit: audit))
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func token(
        _ agent: String, tenant: String = "acme", roles: [String] = ["agent-full"],
        ttl: TimeInterval = 3600
    ) async throws -> String {
        try await server.authority.issue(Identity(tenant: tenant, agentID: agent, roles: roles), ttl: ttl)
    }

    func client(
        _ agent: String, tenant: String = "acme", roles: [String] = ["agent-full"],
        configure: (inout ClientConfiguration) -> Void = { _ in }
    ) async throws -> ACBClient {
        var configuration = ClientConfiguration(
            port: port, token: try await token(agent, tenant: tenant, roles: roles),
            clientName: "test-\(agent)")
        configuration.initialBackoffMs = 20
        configure(&configuration)
        return try await ACBClient.connect(configuration)
    }

    func raw() async throws -> RawConnection {
        try await RawConnection.connect(port: port)
    }
}

/// Expects `body` to throw a ``BusError`` with `code`; returns it.
@discardableResult
func expectBusError(
    _ code: ErrorCode, _ body: () async throws -> Void,
    sourceLocation: SourceLocation = #_sourceLocation
) async -> BusError? {
    do {
        try await body()
        Issue.record("expected \(code.name), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as BusError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected \(code.name), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

extension Deliveries.AsyncIterator {
    /// The next element; fails the test if the sequence ended.
    mutating func take(sourceLocation: SourceLocation = #_sourceLocation) async throws -> Element {
        try #require(await next(), "the sequence ended", sourceLocation: sourceLocation)
    }
}
