import ACBClient
import Actors
import Bus
import Gateway
import Foundation
import NIOCore
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct StreamTests {
    static func payload(_ size: Int) -> ByteBuffer {
        var generator = SystemRandomNumberGenerator()
        return ByteBuffer(bytes: (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    @Test func aLargePayloadArrivesWholeAndVerified() async throws {
        try await TestBus.with({ $0.supervisor.limits.chunkSize = 64 << 10 }) { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let payload = Self.payload(1_000_000)
            let progress = Mutex<[UInt64]>([])
            let ok = try await alice.upload(to: .agent("bob"), from: BufferSource(payload)) { stored, _ in
                progress.withLock { $0.append(stored) }
            }
            #expect(ok.outcome == .delivered)
            #expect(progress.withLock { $0.last } == 1_000_000)
            var streams = bob.streams.makeAsyncIterator()
            let stream = try await streams.take()
            #expect(stream.from == "alice" && stream.size == 1_000_000)
            #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
            try? FileManager.default.removeItem(atPath: stream.path)
            await alice.close()
            await bob.close()
        }
    }

    @Test func aChecksumMismatchIsRefusedAndNothingIsDelivered() async throws {
        try await TestBus.with { bus in
            let bob = try await bus.client("bob")
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            let data = ByteBuffer(string: "not what the checksum says")
            try await alice.send(.streamOpen(StreamOpen(
                ref: 1, streamID: "s1", target: .agent("bob"), totalSize: UInt64(data.readableBytes),
                chunkSize: 1 << 20, sha256: Array(repeating: 0, count: 32))))
            guard case .streamStatus = try await alice.read() else { Issue.record("expected STREAM_STATUS"); return }
            try await alice.send(.streamChunk(StreamChunk(streamID: "s1", index: 0, data: data)))
            try await alice.send(.streamEnd(StreamRef(ref: 2, streamID: "s1")))
            var answer = try await alice.read()
            while case .streamStatus = answer { answer = try await alice.read() }
            guard case .error(let error) = answer else { Issue.record("expected ERROR, got \(String(describing: answer))"); return }
            #expect(error.ref == 2 && error.error.code == .checksumMismatch)
            await bob.close()
        }
    }

    @Test func aChunkOutOfOrderAbortsTheStream() async throws {
        try await TestBus.with { bus in
            let bob = try await bus.client("bob")
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            try await alice.send(.streamOpen(StreamOpen(ref: 1, streamID: "s1", target: .agent("bob"),
                                                        totalSize: 10, chunkSize: 5, sha256: Array(repeating: 0, count: 32))))
            _ = try await alice.read()
            try await alice.send(.streamChunk(StreamChunk(streamID: "s1", index: 1, data: ByteBuffer(string: "abcde"))))
            guard case .streamAbort(let abort) = try await alice.read() else { Issue.record("expected ABORT"); return }
            #expect(abort.code == .badFrame)
            await bob.close()
        }
    }

    @Test func aBrokenUploadResumesFromTheLastStoredChunk() async throws {
        try await TestBus.with({ $0.supervisor.limits.chunkSize = 16 << 10 }) { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let payload = Self.payload(1 << 20)
            let reports = Mutex<[UInt64]>([])
            let cut = Mutex(false)
            try await alice.upload(to: .agent("bob"), from: BufferSource(payload)) { stored, _ in
                reports.withLock { $0.append(stored) }
                let cutNow = cut.withLock { cut in
                    defer { cut = true }
                    return !cut && stored >= 256 << 10
                }
                if cutNow { Task { await alice.dropConnection() } }
            }
            let seen = reports.withLock { $0 }
            #expect(cut.withLock { $0 })
            #expect(seen == seen.sorted(), "after the cut the upload went on from where it was, never from 0")
            var streams = bob.streams.makeAsyncIterator()
            let stream = try await streams.take()
            #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
            try? FileManager.default.removeItem(atPath: stream.path)
            await alice.close()
            await bob.close()
        }
    }
}
