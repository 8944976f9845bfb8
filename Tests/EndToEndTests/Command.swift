import Foundation
import NIOPosix

/// A program run to its end on a thread pool of the tests' own, not the cooperative one: every
/// test's bus needs the cooperative pool's few threads (its handshakes run there), and a test that
/// waits there for a process starves them.
enum Command {
    /// Threads of the tests' own for blocking waits: NIO's shared pool serves the buses under test.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 8)
        pool.start()
        return pool
    }()

    /// Which of the program's outputs to keep (the others go to /dev/null).
    enum Output: Sendable {
        case stdout, stderr, both
    }

    /// Runs `body`, which blocks, on ``threads``.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await threads.runIfActive(body)
    }

    /// Runs `path` with `arguments` (`environment` nil: this process's), `stdin` as its input.
    /// - Returns: its exit status and the `output` kept.
    static func run(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil,
        output kept: Output = .both
    ) async throws -> (status: Int32, output: String) {
        try await blocking {
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
