import Actors
import Bus
import Gateway
import NIOCore
import Testing

/// Context bodies over the inline limit on their way to one session (docs/protocol.md 4.24), while
/// the socket pushes back: every frame comes once, in order, and the bodies arrive whole.
@Suite(.timeLimit(.minutes(1))) struct ContextBodyStreamTests {
    /// Two GETs read in one batch put 6 MiB behind a 4 MiB high-water mark: the write that crosses
    /// it flushes, and the flush can make the connection writable again from inside that write. The
    /// session must not write what it already wrote (it once repeated a batch, and a chunk it had
    /// not yet marked as sent).
    @Test func twoLargeBodiesReadAtOnceComeWholeOneAfterTheOther() async throws {
        try await TestBus.with({ $0.supervisor.contextBodyBytes = 8 << 20 }) { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            let first = ByteBuffer(bytes: (0..<(3 << 20) + 5).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let second = ByteBuffer(bytes: first.readableBytesView.reversed())
            for body in [first, second] {
                let upload = try await alice.upload(body, to: "big")
                _ = try await alice.write(.put, "big", bodyStream: upload).get()
            }
            for _ in 0..<5 {
                let gets = [(ref: alice.ref(), version: UInt64(0)), (ref: alice.ref(), version: UInt64(1))]
                var bytes = ByteBuffer()
                for get in gets {
                    Frame.contextGet(ContextGet(ref: get.ref, id: "big", version: get.version)).encode(into: &bytes)
                }
                try await alice.raw.send(bytes)  // one write: the bus reads both GETs in one batch

                let (log, bodies) = try await Self.readBodies(of: gets.map(\.ref), from: &alice.raw)
                let expected = gets.flatMap { get in (0..<4).map { "\(get.ref)/\($0)" } + ["END \(get.ref)"] }
                let described = log.joined(separator: ", ")
                #expect(log.filter { !$0.hasPrefix("CONTEXT") } == expected, "\(described)")
                for get in gets {
                    let answered = try #require(log.firstIndex(of: "CONTEXT \(get.ref)"), "\(described)")
                    #expect(answered < log.firstIndex(of: "\(get.ref)/0") ?? 0, "\(described)")
                }
                #expect(bodies[gets[0].ref] == second && bodies[gets[1].ref] == first)
            }
            await alice.close()
        }
    }

    /// Reads the CONTEXT answers to `refs` and their streamed bodies, up to the last STREAM_END:
    /// what came (`CONTEXT <ref>`, `<ref>/<index>`, `END <ref>`) and each body's bytes.
    static func readBodies(
        of refs: [UInt64], from raw: inout RawConnection
    ) async throws -> (log: [String], bodies: [UInt64: ByteBuffer]) {
        let refOf = Dictionary(uniqueKeysWithValues: refs.map { (ContextReply.streamID(ref: $0), $0) })
        var log: [String] = []
        var bodies: [UInt64: ByteBuffer] = [:]
        var ended = 0
        while ended < refs.count {
            switch try await raw.read() {
            case .context(let reply) where refOf.values.contains(reply.ref):
                #expect(reply.status == .streamed)
                log.append("CONTEXT \(reply.ref)")
            case .streamChunk(var chunk):
                let ref = try #require(refOf[chunk.streamID], "a chunk of \(chunk.streamID)")
                log.append("\(ref)/\(chunk.index)")
                bodies[ref, default: ByteBuffer()].writeBuffer(&chunk.data)
            case .streamEnd(let end):
                log.append("END \(end.ref)")
                ended += 1
            case nil: throw BusError(.unavailable, "closed after \(log)")
            case let other?: Issue.record("unexpected \(other)")
            }
        }
        return (log, bodies)
    }
}
