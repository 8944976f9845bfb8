import ACBClient
import Actors
import Bus
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import Synchronization

/// The bus's per-message path in one thread, with no sockets and no scheduler noise: SEND frames
/// decoded, routed to the receiver's session, DELIVERs encoded, a cumulative ACK per batch. Run it
/// under valgrind (scripts/bench-hotpath.sh) to count instructions and allocations per message.
///
/// The sessions run on NIO's testing event loop (the embedded one cannot be an actor's executor),
/// and their channels drop what is written: the agents' side is not measured.
///
/// Usage: `acb-hotpath MESSAGES [p2p|fanout] [1|2] [sealed]`: the protocol version of the sender,
/// and `sealed` for a 256-byte payload sealed end to end (a 317-byte box) instead of a plain one.
@main
struct HotPath {
    /// Messages per read batch, as a pipelining client sends them.
    static let batch = 64
    /// Seals the `sealed` payload: to the bus, it is bytes like any other.
    static let sealer = BoxSealer(own: .generate(), peer: AgentKeys.generate().publicKeys)

    static func main() async throws {
        let arguments = CommandLine.arguments.dropFirst()
        let messages = arguments.first.flatMap(Int.init) ?? 100_000
        let fanout = arguments.dropFirst().first == "fanout"
        let version = arguments.dropFirst(2).first.flatMap(UInt16.init) ?? 2
        let plain = [UInt8](repeating: 0x61, count: 256)
        let payload = ByteBuffer(bytes: arguments.dropFirst(3).first == "sealed" ? Self.sealer.seal(plain) : plain)

        var configuration = SupervisorConfiguration()
        configuration.streamDirectory = NSTemporaryDirectory() + "acb-hotpath-\(getpid())"
        configuration.rateLimitPerSecond = 0
        defer { try? FileManager.default.removeItem(atPath: configuration.streamDirectory) }
        let supervisor = try Supervisor(
            configuration: configuration, audit: LogAuditSink(logger: Logger(label: "hotpath")),
            logger: Logger(label: "hotpath"))
        let loop = NIOAsyncTestingEventLoop()
        var receivers: [Peer] = []
        for index in 0..<(fanout ? 10 : 1) {
            receivers.append(try await Peer(supervisor, "r\(index)", loop: loop, version: 1))
        }
        let sender = try await Peer(supervisor, "s", loop: loop, version: version)
        if fanout {
            for receiver in receivers { try await receiver.read(.subscribe(PatternCommand(ref: 1, pattern: "t.*"))) }
        }

        var sent = 0
        while sent < messages {
            var input = ByteBufferAllocator().buffer(capacity: batch * 300)
            for _ in 0..<batch {
                sent += 1
                let frame: Frame =
                    fanout
                    ? .publish(Fanout(ref: UInt64(sent), topic: "t.x", payload: payload))
                    : .send(Send(ref: UInt64(sent), target: .agent("r0"), payload: payload))
                frame.encode(into: &input)
            }
            try await sender.read(input)
            await loop.run()
            for receiver in receivers {
                try await receiver.read(.ack(Ack(deliveryID: UInt64(sent), cumulative: true)))
            }
            await loop.run()
        }
        // A check that the messages went through: a DELIVER of a 256-byte payload is 297 bytes.
        let delivered = receivers.map { $0.written.bytes.load(ordering: .relaxed) }.reduce(0, +)
        let answers = sender.written.bytes.load(ordering: .relaxed)
        print(
            "\(sent) messages, \(fanout ? "fan-out 1 → \(receivers.count)" : "p2p"), protocol \(version):",
            "\(delivered / sent) bytes to receivers and \(answers / sent) to the sender per message")
    }
}

/// One agent's session on a testing channel that drops what it is written.
struct Peer {
    let loop: NIOAsyncTestingEventLoop
    let session: AgentSession
    /// What the session wrote to its agent.
    let written = Discard()

    init(_ supervisor: Supervisor, _ agent: String, loop: NIOAsyncTestingEventLoop, version: UInt16) async throws {
        self.loop = loop
        let channel = await NIOAsyncTestingChannel(handler: written, loop: loop)
        let identity = Identity(tenant: "bench", agentID: agent, roles: ["agent-full"])
        session = try await loop.executeInContext {
            let session = try supervisor.openSession(identity: identity, channel: channel)
            session.assumeIsolated { $0.start(protocolVersion: version) }
            return session
        }
    }

    /// Decodes the frames in `input` and hands them to the session, as the gateway does per read.
    func read(_ input: ByteBuffer) async throws {
        try await loop.executeInContext { [session] in
            var input = input
            try session.assumeIsolated { session in
                while let frame = try Frame.decode(from: &input, maxFrameBytes: 1 << 20) { session.receive(frame) }
                session.flush()
            }
        }
    }

    func read(_ frame: Frame) async throws {
        var bytes = ByteBuffer()
        frame.encode(into: &bytes)
        try await read(bytes)
    }
}

/// Drops every write, counting its bytes: the agents' side of the connection is not measured.
final class Discard: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = ByteBuffer
    let bytes = Atomic<Int>(0)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        bytes.add(unwrapOutboundIn(data).readableBytes, ordering: .relaxed)
        promise?.succeed()
    }

    func flush(context: ChannelHandlerContext) {}
}
