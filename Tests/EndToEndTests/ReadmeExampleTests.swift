import ACBClient
import Foundation
import Gateway
import Synchronization
import Testing

/// README.md's client example, as a user meets it: built by scripts/readme-example.sh in a package
/// of its own that depends on this checkout (`make test` runs it first), then run here against a
/// bus over TLS with the agents it talks to.
@Suite(.timeLimit(.minutes(1))) struct ReadmeExampleTests {
    static let executable = "\(Sidecars.root)/.build/readme-example/debug/readme-example"

    @Test func theReadmeExampleRunsAgainstTheBus() async throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: Self.executable),
            "\(Self.executable) is missing: `make test` builds it with scripts/readme-example.sh")
        try await TestBus.with({ $0.tls = TLSEndToEndTests.serverTLS }) { bus in
            let tls = try TLSEndToEndTests.clientTLS()
            let bob = try await bus.client("bob") { $0.tls = tls }
            let translator = try await bus.client("translator") { $0.tls = tls }
            try await translator.register(AgentDescription(agentType: "translator", capabilities: ["translate"]))
            translator.serve { request in ByteBuffer(string: "\(request.text) means hello") }

            // The example reads .certs/ca.pem from where it runs, as after `make run`.
            let folder = NSTemporaryDirectory() + "acb-readme-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: "\(folder)/.certs", withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try FileManager.default.copyItem(atPath: DevCertificates.path("ca.pem"), toPath: "\(folder)/.certs/ca.pem")
            let output = Output()
            let example = Process()
            // Line-buffered, so each print reaches the pipe as it happens.
            example.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
            example.arguments = ["-oL", Self.executable]
            example.currentDirectoryURL = URL(fileURLWithPath: folder)
            example.environment = [
                "ACB_PORT": "\(bus.port)", "ACB_TOKEN": try await bus.token("my-agent"),
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            ]
            let pipe = Pipe()
            example.standardOutput = pipe
            pipe.fileHandleForReading.readabilityHandler = { output.append($0.availableData) }
            try example.run()
            defer { example.terminate() }

            var inbox = bob.deliveries.makeAsyncIterator()
            let hello = try await inbox.take()
            #expect(hello.from == "my-agent" && hello.text == "hello")
            try await Sidecars.eventually("the example's request to be answered") {
                output.text.contains("translated: bonjour means hello")
            }
            // It serves `summarize`, and prints what comes on its topic.
            let answer = try await bob.request(
                .capability("summarize"), ByteBuffer(string: "the news"), timeoutMs: 5_000)
            #expect(answer.text == "summary of the news")
            _ = try await bob.publish(topic: "orders.eu.created", ByteBuffer(string: "order 7"))
            try await Sidecars.eventually("the example to print the order") { output.text.contains("bob order 7") }
            await bob.close()
            await translator.close()
        }
    }

    /// What the example printed so far.
    final class Output: Sendable {
        private let bytes = Mutex(Data())
        func append(_ data: Data) { bytes.withLock { $0.append(data) } }
        var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
    }
}
