import Foundation
import Synchronization
import Testing

@testable import Persistence

/// The sidecars `make test` starts with scripts/sidecars.sh, found through the environment that
/// script's `env` exports. Tests that need them fail (never skip) when they are missing.
enum Sidecars {
    /// The checkout: scripts and migrations are found from here.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static func setting(_ name: String) throws -> String {
        try #require(
            ProcessInfo.processInfo.environment[name],
            "\(name) is not set: run the tests with `make test`, which starts the sidecars and exports it")
    }

    /// The test database, migrated once per test run.
    static func postgres() throws -> String {
        let url = try setting("ACB_POSTGRES_URL")
        try migrated.withLock { done in
            if !done {
                try Migrator(directory: "\(root)/migrations").apply(url: url)
                done = true
            }
        }
        return url
    }

    static func redis() throws -> String { try setting("ACB_REDIS_URL") }
    static func kafka() throws -> String { try setting("ACB_KAFKA_BROKERS") }

    private static let migrated = Mutex(false)

    /// `scripts/sidecars.sh <verb> <sidecar>`: stop, kill or start one sidecar (waiting on
    /// ``Command/threads``, not the cooperative pool).
    static func control(_ verb: String, _ sidecar: String) async throws {
        let arguments = ["/bin/bash", "\(root)/scripts/sidecars.sh", verb, sidecar]
        let status = try await Command.blocking { try spawnAndWait(arguments) }
        try #require(status == 0, "sidecars.sh \(verb) \(sidecar) failed")
    }

    /// Runs a command to its end with posix_spawn and waitpid. (Foundation's `Process` sometimes
    /// never notices the exit of a child that started a daemon, and `waitUntilExit` hangs.)
    static func spawnAndWait(_ arguments: [String]) throws -> Int32 {
        var pid: pid_t = 0
        var argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, arguments[0], nil, nil, &argv, environ)
        try #require(spawned == 0, "cannot run \(arguments[0])")
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        return (status >> 8) & 0xFF
    }

    /// Runs one query on the test database.
    static func query(_ sql: String, _ parameters: [String] = []) throws -> PostgresRows {
        try PostgresConnection(url: try postgres()).query(sql, parameters.map { .text($0) })
    }

    /// The records of a Kafka topic, from the beginning, read by a real Kafka consumer
    /// (confluent-kafka, scripts/kafka-read.py): waits until `count` arrived or `timeout` passed.
    static func kafkaRecords(topic: String, count: Int, timeout: Int = 30) async throws -> [[String: Any]] {
        let arguments = [
            "\(root)/scripts/kafka-read.py", "--brokers", try kafka(), "--topic", topic, "--count", "\(count)",
            "--timeout", "\(timeout)", "--no-group",
        ]
        let output = try await Command.run(try setting("ACB_PYTHON"), arguments, output: .stdout).output
        return output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// A folder for one test's spools.
    static func scratch() -> String { NSTemporaryDirectory() + "acb-spool-\(UUID().uuidString)" }

    /// Polls `condition` every 50 ms until it holds; fails after `seconds`. For state the bus
    /// reaches on its own time (a sidecar reconnecting), never to assert on speed.
    static func eventually(
        _ what: String, seconds: Double = 30, sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try await !condition() {
            guard Date() < deadline else {
                Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
