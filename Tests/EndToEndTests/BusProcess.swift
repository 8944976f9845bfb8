import ACBClient
import Bus
import Foundation
import Gateway
import Testing

/// Where a test reaches a bus: in this process (``TestBus``) or as a subprocess (``BusProcess``).
protocol BusEndpoint {
    func client(_ agent: String, tenant: String) async throws -> ACBClient
}

extension TestBus: BusEndpoint {
    func client(_ agent: String, tenant: String) async throws -> ACBClient {
        try await client(agent, tenant: tenant, roles: ["agent-full"])
    }
}

/// `acb serve` as a user runs it, wired to the sidecars, for tests that kill it with SIGKILL.
struct BusProcess: BusEndpoint {
    static let secret = String(repeating: "kill-secret-", count: 3)
    let process: Process
    let port: Int

    /// Starts the bus with PostgreSQL and Kafka and the spool folder `spool`, and waits for its port
    /// (on ``Command/threads``: a blocking read must not hold one of the cooperative pool's threads,
    /// which the other tests' buses need).
    /// - Parameter arguments: further flags of `acb serve`.
    static func start(spool: String, arguments: [String] = []) async throws -> BusProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLITests.acb)
        process.arguments =
            [
                "serve", "--port", "0", "--token-secret", Self.secret, "--postgres-url", try Sidecars.postgres(),
                "--kafka-brokers", try Sidecars.kafka(), "--spool-dir", spool, "--stream-dir", "\(spool)/streams",
                "--log-level", "info", "--admin-port", "0",
            ] + arguments
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let log = stderr.fileHandleForReading.fileDescriptor
        let port = try await Command.blocking {
            CLITests.listeningPort(FileHandle(fileDescriptor: log, closeOnDealloc: false))
        }
        // Keep reading its log, so a full pipe never blocks the server.
        stderr.fileHandleForReading.readabilityHandler = { _ = $0.availableData }
        return BusProcess(process: process, port: try #require(port, "acb serve did not start"))
    }

    /// SIGKILL: no drain, no flush.
    func kill() {
        guard process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func token(_ agent: String, tenant: String) async throws -> String {
        try await TokenAuthority(secret: Self.secret).issue(
            Identity(tenant: tenant, agentID: agent, roles: ["agent-full"]), ttl: 3600)
    }

    func client(_ agent: String, tenant: String) async throws -> ACBClient {
        try await client(agent, tenant: tenant, otherNodes: [])
    }

    /// - Parameter otherNodes: where the client goes on when this bus is gone.
    func client(_ agent: String, tenant: String, otherNodes: [BusProcess]) async throws -> ACBClient {
        var configuration = ClientConfiguration(
            port: port, token: try await token(agent, tenant: tenant), clientName: "test-\(agent)")
        configuration.initialBackoffMs = 20
        configuration.otherNodes = otherNodes.map { NodeAddress(host: "127.0.0.1", port: $0.port) }
        return try await ACBClient.connect(configuration)
    }
}
