import ACBClient
import ACBTLS
import Bus
import Foundation
import NIOCore
import NIOEmbedded
import TestSupport
import Testing

/// The handshake against mutated input: TLS ClientHellos into the TLS handler, and HELLO, LOGIN and
/// REFRESH frames into a running bus. Nothing crashes or hangs, and the bus serves agents afterwards.
@Suite(.timeLimit(.minutes(3))) struct HandshakeFuzzTests {
    /// Connections per run: 2,000 in `make test`, more with ACB_FUZZ_ITERATIONS (`make fuzz`).
    static let iterations =
        ProcessInfo.processInfo.environment["ACB_FUZZ_ITERATIONS"].flatMap(Int.init).map { $0 / 50 } ?? 2_000
    static let seed = ProcessInfo.processInfo.environment["ACB_FUZZ_SEED"].flatMap(UInt64.init) ?? 0xACB

    @Test func mutatedClientHellosFailCleanly() throws {
        let server = try TLSContext.server(TLSEndToEndTests.serverTLS)
        let client = try TLSEndToEndTests.clientTLS()
        // A real first flight of a client.
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: client, serverName: "localhost"))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let hello = Array(try #require(try channel.readOutbound(as: ByteBuffer.self)).readableBytesView)
        var mutator = Mutator(seed: Self.seed)
        var failed = 0
        for _ in 0..<Self.iterations {
            let target = EmbeddedChannel()
            try target.pipeline.syncOperations.addHandler(TLSHandler(context: server))
            try target.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            do {
                try target.writeInbound(ByteBuffer(bytes: mutator.mutate(hello)))
            } catch is TLSError {
                failed += 1
            }
            _ = try? target.finish()
        }
        #expect(failed > 0)
    }

    @Test func mutatedHandshakeFramesLeaveTheBusServing() async throws {
        try await TestBus.with { bus in
            let token = try await bus.token("alice")
            let corpus: [[UInt8]] = [
                .hello(Hello(token: token, clientName: "fuzz")),
                .login(Login(tenant: "acme", agentID: "alice", secret: "0123456789abcdef")),
                .refresh(Refresh(refreshToken: token)),
            ].map { Array(SampleFrames.encode($0).readableBytesView) }
            var mutator = Mutator(seed: Self.seed)
            var cases: [[UInt8]] = []
            for _ in 0..<Self.iterations {
                var input = corpus[mutator.below(corpus.count)]
                if mutator.below(2) == 0 {
                    input +=
                        SampleFrames.encode(SampleFrames.all[mutator.below(SampleFrames.all.count)]).readableBytesView
                }
                cases.append(mutator.mutate(input))
            }
            // Eight connections at a time, each writing its case and leaving.
            let all = cases
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<8 {
                    group.addTask {
                        for bytes in stride(from: lane, to: all.count, by: 8).map({ all[$0] }) {
                            let raw = try await bus.raw()
                            try? await raw.send(ByteBuffer(bytes: bytes))
                            await raw.close()
                        }
                    }
                }
                try await group.waitForAll()
            }
            let alice = try await bus.client("alice")
            #expect(try await alice.send(to: .agent("alice"), ByteBuffer(string: "still serving")).recipients == 1)
            await alice.close()
        }
    }
}
