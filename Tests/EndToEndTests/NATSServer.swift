import Foundation

/// A real nats-server on a free port for one test: the harness's performance peer.
/// Fails (never skips) when nats-server is not installed: `scripts/ensure-deps.sh` installs it.
struct NATSServer {
    let port: Int
    let pid: Int32

    static func with(_ body: (NATSServer) async throws -> Void) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["nats-server", "-a", "127.0.0.1", "-p", "-1"]
        let log = Pipe()
        process.standardError = log
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        guard
            let port = CLITests.listeningPort(
                log.fileHandleForReading, marker: "Listening for client connections on")
        else {
            throw CocoaError(.executableNotLoadable, userInfo: [NSLocalizedDescriptionKey: "nats-server did not start"])
        }
        try await body(NATSServer(port: port, pid: process.processIdentifier))
    }
}
