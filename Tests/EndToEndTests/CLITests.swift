import ACBClient
import Bus
import Foundation
import NIOCore
import Testing

/// The `acb` executable as a user runs it: a subprocess, configured by flags, environment and file.
@Suite(.timeLimit(.minutes(1))) struct CLITests {
    /// `acb` sits beside the test binary in the build folder.
    static let acb = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("acb").path

    static let secret = String(repeating: "cli-secret-", count: 3)

    @Test func sigtermSendsGoAwayDrainsAndExitsZero() async throws {
        let config = NSTemporaryDirectory() + "acb-cli-\(UUID().uuidString).json"
        try Data(#"{"token-secret": "\#(Self.secret)", "port": 7}"#.utf8).write(to: URL(fileURLWithPath: config))
        defer { try? FileManager.default.removeItem(atPath: config) }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Self.acb)
        // The flag beats the file's port 7; the file gives the secret. A clean environment, because an
        // ACB_TOKEN_SECRET there (make exports one) would rightly beat the file.
        server.arguments = ["serve", "--config", config, "--port", "0", "--admin-port", "0"]
        server.environment = [:]
        let stderr = Pipe()
        server.standardError = stderr
        // Not the test runner's stdout: a child left holding it would keep the runner waiting for EOF.
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        let port = try #require(Self.listeningPort(stderr.fileHandleForReading))

        let token = try await Self.issueToken(agent: "alice")
        var raw = try await RawConnection.connect(port: port)
        guard case .welcome = try await raw.hello(token) else { Issue.record("expected WELCOME"); return }
        server.terminate()
        var frames: [Frame] = []
        while let frame = try await raw.read() { frames.append(frame) }
        #expect(frames.first == .goAway(GoAway(code: .shuttingDown, message: "the server is shutting down")))
        server.waitUntilExit()
        #expect(server.terminationReason == .exit && server.terminationStatus == 0)
    }

    @Test(arguments: [
        (["serve"], "token-secret is required"),
        (["serve", "--token-secret", "short"], "token-secret is required"),
        (["serve", "--token-secret", secret, "--port", "70000"], "port must be an integer in 0...65535"),
        (["serve", "--token-secret", secret, "--log-level", "loud"], "log-level must be one of"),
        (["serve", "--config", "/nonexistent.json"], "cannot be read"),
        (["serve", "--token-secret", secret, "--durable-agents", "t/a,bob"], "tenant/agent entries, got 'bob'"),
        (["serve", "--token-secret", secret, "--durable-agents", "t/a"], "durable-agents needs postgres-url"),
        (["serve", "--token-secret", secret, "--message-retention-hours", "ever"], "message-retention-hours must be"),
        (["token", "issue", "--agent", "a b", "--tenant", "t", "--token-secret", secret], "agent may hold"),
    ])
    func badConfigurationIsOneLineOnStderrAndExitTwo(arguments: [String], message: String) async throws {
        let (status, output) = try await Command.run(Self.acb, arguments, environment: [:], output: .stderr)
        #expect(status == 2)
        #expect(
            output.split(separator: "\n").count == 1 && output.hasPrefix("acb: ") && output.contains(message),
            "\(output)")
    }

    /// Reads a server's log until a line with `marker` ends in its port (blocking reads: the log may
    /// not have started when this is called). Nil if the server closed its log first.
    static func listeningPort(_ log: FileHandle, marker: String = "agents connect to") -> Int? {
        line(in: log, containing: marker)?.split(separator: ":").last
            .flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// Reads a log until a whole line contains `marker`, and returns it; nil if the log closed first.
    static func line(in log: FileHandle, containing marker: String) -> String? {
        var text = ""
        var chunk = [UInt8](repeating: 0, count: 1)  // a byte at a time: nothing after the line is taken
        while true {
            let count = read(log.fileDescriptor, &chunk, chunk.count)
            if count < 0, errno == EINTR { continue }  // other tests' children exiting signal this process
            guard count > 0 else { return nil }
            if chunk[0] != UInt8(ascii: "\n") {
                text.unicodeScalars.append(Unicode.Scalar(chunk[0]))
            } else if text.contains(marker) {
                return text
            } else {
                text = ""
            }
        }
    }

    /// `acb token issue`, with the secret from the environment.
    static func issueToken(agent: String) async throws -> String {
        try await Command.run(
            acb, ["token", "issue", "--agent", agent, "--tenant", "cli", "--roles", "agent-full"],
            environment: ["ACB_TOKEN_SECRET": secret], output: .stdout
        ).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
