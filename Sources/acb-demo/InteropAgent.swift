import ACBClient
import ArgumentParser
import Crypto
import Foundation

/// The Swift side of the interop test: one agent, driven by the messages of a peer in another language.
///
/// It serves `--capability` (the reply is "swift:" + the request's text), writes
/// `ready <agent id>` as its only line on stdout, then answers the peer: "start" runs ``start(_:)``,
/// "bye" ends the run with status 0, and any other text comes back as "echo: <text>". Each stream it
/// receives is reported to the peer as "stream <size> <sha256>", then acknowledged and deleted.
/// Any error, or no "bye" within ``runLimit``, ends the run with the error on stderr and status 1,
/// so that the test fails rather than hangs.
///
/// With `--sealed`, it has keys and seals everything it sends to the peer end to end: the replies
/// to the peer's sealed requests, its messages, and its request on "start" (to the peer by id, a
/// capability names no keys) and stream. Before the stream, "start" then makes a group `team` of
/// the peer, broadcasts "to the team" sealed with its key, and shares the sealed context
/// `swift-notes` with the peer ("shared swift-notes"); "read <id>" answers "read: <body>" of sealed
/// context `id`. A delivery it cannot open ends the run.
struct InteropAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop",
        abstract: "The Swift agent of the interop test, driven by a peer's messages.")

    /// How long a run may last.
    static let runLimit = Duration.seconds(60)

    @OptionGroup var bus: BusOptions
    @Option(help: "Token of this agent.") var token: String
    @Option(help: "Agent id of the peer that drives this agent.") var peer: String
    @Option(help: "Capability this agent serves.") var capability = "swift-echo"
    @Option(help: "Capability of the peer, asked on 'start'.") var peerCapability = "py-upper"
    @Option(help: "Size in bytes of the stream uploaded on 'start'.") var streamBytes = 3_000_000
    @Flag(help: "Seal what is sent to the peer end to end (keys made for this run).") var sealed = false

    func run() async throws {
        let client = try await bus.client(token: token, name: "acb-interop-swift", keys: sealed ? .generate() : nil)
        try await client.register(AgentDescription(agentType: "interop-swift", capabilities: [capability]))
        client.serve { request in ByteBuffer(string: "swift:\(request.text)") }
        guard let agentID = client.welcome?.agentID else { throw BusError(.unavailable, "disconnected before ready") }
        FileHandle.standardOutput.write(Data("ready \(agentID)\n".utf8))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await converse(client) }
            group.addTask { try await reportStreams(client) }
            group.addTask {
                for await failure in client.sealingFailures {
                    throw BusError(.badFrame, "refused a sealed delivery from \(failure.from): \(failure.error)")
                }
            }
            group.addTask {
                try await Task.sleep(for: Self.runLimit)
                throw BusError(.timeout, "no 'bye' from \(peer) within \(Self.runLimit)")
            }
            // The first child to end decides: "bye", an error or the run limit. Closing the client
            // ends the others: their sequences finish and their calls fail.
            let first = await group.nextResult()
            group.cancelAll()
            await client.close()
            try first?.get()
        }
    }

    /// Answers the peer's messages until "bye"; deliveries that end before it are a failure.
    private func converse(_ client: ACBClient) async throws {
        for await delivery in client.deliveries {
            switch delivery.text {
            case "start": try await start(client)
            case "bye": return
            case let text where sealed && text.hasPrefix("read "):
                try await tell(client, "read: \(try await client.getSealed(String(text.dropFirst(5))).text)")
            default: try await tell(client, "echo: \(delivery.text)")
            }
        }
        throw BusError(.unavailable, "the deliveries ended before 'bye'")
    }

    /// Sends a greeting, asks `--peer-capability` and uploads `--stream-bytes` bytes (byte i is
    /// i % 251), telling the peer after each step what it got.
    private func start(_ client: ACBClient) async throws {
        try await tell(client, "hello from swift")
        let answer = try await client.request(
            sealed ? .agent(peer) : .capability(peerCapability), ByteBuffer(string: "swift asks"), timeoutMs: 10_000,
            sealed: sealed)
        try await tell(client, "answer: \(answer.text)")
        if sealed {
            let team = try await client.sealedGroup("team", members: [peer])
            try await client.broadcast(ByteBuffer(string: "to the team"), group: team.id)
            try await client.shareSealed(
                "swift-notes", ByteBuffer(string: "notes from swift"),
                options: ContextOptions(scope: .shared, readers: [peer]))
            try await tell(client, "shared swift-notes")
        }
        let bytes = (0..<streamBytes).map { UInt8($0 % 251) }
        try await client.upload(to: .agent(peer), from: BufferSource(ByteBuffer(bytes: bytes)), sealed: sealed)
        try await tell(client, "uploaded \(bytes.count) \(Self.hex(SHA256.hash(data: bytes)))")
    }

    /// Tells the peer the size and SHA-256 of each stream received, then acknowledges and deletes it.
    private func reportStreams(_ client: ACBClient) async throws {
        for await stream in client.streams {
            let digest = SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: stream.path)))
            try await tell(client, "stream \(stream.size) \(Self.hex(digest))")
            stream.ack()
            try FileManager.default.removeItem(atPath: stream.path)
        }
        throw BusError(.unavailable, "the streams ended before 'bye'")
    }

    private func tell(_ client: ACBClient, _ text: String) async throws {
        try await client.send(to: .agent(peer), ByteBuffer(string: text), sealed: sealed ? .box : nil)
    }

    private static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
