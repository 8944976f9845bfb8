import ACBClient
import ACBTLS
import ArgumentParser
import Bus
import Foundation
import NIOCore

/// `acb-demo`: agents talking through a running bus.
@main
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acb-demo",
        abstract: "Demo agents for ACB.",
        subcommands: [Pair.self, StreamDemo.self, ContextsDemo.self, InteropAgent.self]
    )
}

/// Where the bus is, shared by the demos.
struct BusOptions: ParsableArguments {
    @Option(help: "Bus host.") var host = "127.0.0.1"
    @Option(help: "Bus port.") var port = 7400
    @Option(help: "PEM CA file that the bus's certificate chains to: connect with TLS. Default: plain TCP.")
    var tlsCa: String?

    func client(token: String, name: String, keys: AgentKeys? = nil) async throws -> ACBClient {
        var configuration = ClientConfiguration(host: host, port: port, token: token, clientName: name)
        configuration.tls = try tlsCa.map { try TLSContext.client(TLSConfiguration(trustRoots: $0)) }
        configuration.keys = keys
        return try await ACBClient.connect(configuration)
    }
}

/// Two agents exchange messages, then one asks the other a question.
struct Pair: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Two agents exchange messages and a request/reply.")

    @OptionGroup var bus: BusOptions
    @Option(help: "Token of the first agent (alice).") var tokenA: String
    @Option(help: "Token of the second agent (bob).") var tokenB: String

    func run() async throws {
        let alice = try await bus.client(token: tokenA, name: "demo-alice")
        let bob = try await bus.client(token: tokenB, name: "demo-bob")
        let aliceID = alice.welcome?.agentID ?? "alice"
        let bobID = bob.welcome?.agentID ?? "bob"
        try await bob.register(AgentDescription(agentType: "assistant", capabilities: ["summarize"]))
        bob.serve { request in
            ByteBuffer(string: "summary of '\(request.text)': \(request.text.split(separator: " ").count) words")
        }
        for text in ["hello bob", "how are you?"] {
            try await alice.send(to: .agent(bobID), ByteBuffer(string: text))
            print("\(aliceID) → \(bobID): \(text)")
        }
        var received = 0
        for await delivery in bob.deliveries {
            print("\(bobID) got from \(delivery.from): \(delivery.text)")
            try await bob.send(to: .agent(delivery.from), ByteBuffer(string: "re: \(delivery.text)"))
            received += 1
            if received == 2 { break }
        }
        var replies = 0
        for await delivery in alice.deliveries {
            print("\(aliceID) got from \(delivery.from): \(delivery.text)")
            replies += 1
            if replies == 2 { break }
        }
        let found = try await alice.discover(capability: "summarize")
        print("\(aliceID) discovered: \(found.agents.map(\.agentID))")
        let answer = try await alice.request(
            .capability("summarize"), ByteBuffer(string: "the quick brown fox"),
            timeoutMs: 5_000)
        print("\(aliceID) asked for 'summarize', \(answer.from) answered: \(answer.text)")
        await alice.close()
        await bob.close()
    }
}

/// One agent streams a large payload to another, with a progress line.
struct StreamDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream",
        abstract: "Stream a large payload between two agents.")

    @OptionGroup var bus: BusOptions
    @Option(help: "Token of the sender.") var tokenA: String
    @Option(help: "Token of the receiver.") var tokenB: String
    @Option(help: "Payload size in MiB.") var sizeMib = 100

    func run() async throws {
        let sender = try await bus.client(token: tokenA, name: "demo-sender")
        let receiver = try await bus.client(token: tokenB, name: "demo-receiver")
        let receiverID = receiver.welcome?.agentID ?? "receiver"
        let path = "/tmp/acb-demo-\(UUID().uuidString)"
        try Self.writeRandomFile(path: path, mebibytes: sizeMib)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let source = try FileSource(path: path)
        let started = Date()
        try await sender.upload(to: .agent(receiverID), from: source) { stored, total in
            let percent = Double(stored) / Double(total) * 100
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "\rsent %6.1f%% (%llu of %llu bytes)", percent,
                        stored, total
                    ).utf8))
        }
        for await stream in receiver.streams {
            let seconds = Date().timeIntervalSince(started)
            let rate = Double(stream.size) / seconds / 1_048_576
            print(
                "\n\(receiverID) received \(stream.size) bytes from \(stream.from), SHA-256 verified, "
                    + String(format: "%.2f s, %.0f MiB/s", seconds, rate))
            try? FileManager.default.removeItem(atPath: stream.path)
            break
        }
        await sender.close()
        await receiver.close()
    }

    static func writeRandomFile(path: String, mebibytes: Int) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<mebibytes {
            let words = (0..<(1 << 17)).map { _ in generator.next() as UInt64 }
            try handle.write(contentsOf: words.withUnsafeBytes { Data($0) })
        }
    }
}
