import Foundation
import NIOPosix

/// A program run to its end on NIO's thread pool, not the cooperative one: every test's bus needs
/// the cooperative pool's few threads (its handshakes run there), and a test that waits there for
/// a process starves them.
enum Command {
    /// Which of the program's outputs to keep (the others go to /dev/null).
    enum Output: Sendable {
        case stdout, stderr, both
    }

    /// Runs `path` with `arguments` (`environment` nil: this process's), `stdin` as its input.
    /// - Returns: its exit status and the `output` kept.
    static func run(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil,
        output kept: Output = .both
    ) async throws -> (status: Int32, output: String) {
        try await NIOThreadPool.singleton.runIfActive {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            if let environment { process.environment = environment }
            let (output, input) = (Pipe(), Pipe())
            process.standardOutput = kept == .stderr ? FileHandle.nullDevice : output
            process.standardError = kept == .stdout ? FileHandle.nullDevice : output
            process.standardInput = stdin == nil ? FileHandle.nullDevice : input
            try process.run()
            if let stdin {
                input.fileHandleForWriting.write(Data(stdin.utf8))
                try input.fileHandleForWriting.close()
            }
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, text)
        }
    }
}
