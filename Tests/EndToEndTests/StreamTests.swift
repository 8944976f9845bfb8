import ACBClient
import Actors
import Bus
import Crypto
import Foundation
import Gateway
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
            let ok = try await alice.upload(to: .agent("bob"), from: BufferSource(payload), streamID: "report") {
                stored, _ in
                progress.withLock { $0.append(stored) }
            }
            #expect(ok.outcome == .delivered)
            #expect(progress.withLock { $0.last } == 1_000_000)
            var streams = bob.streams.makeAsyncIterator()
            let stream = try await streams.take()
            #expect(stream.from == "alice" && stream.size == 1_000_000 && stream.streamID == "report")
            #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
            try? FileManager.default.removeItem(atPath: stream.path)
            await alice.close()
            await bob.close()
        }
    }

    /// What a STREAM_OPEN and its STREAM_END announce for the payload "the payload".
    enum Announced: CaseIterable {
        case wrongAtOpen, noneAtAll, wrongAtEnd, rightAtOpenWrongAtEnd
        static let right = Array(SHA256.hash(data: Data("the payload".utf8)))
        static let wrong = Array(SHA256.hash(data: Data("another payload".utf8)))
        var atOpen: [UInt8] {
            switch self {
            case .wrongAtOpen: Self.wrong
            case .rightAtOpenWrongAtEnd: Self.right
            case .noneAtAll, .wrongAtEnd: StreamOpen.checksumAtEnd
            }
        }
        var atEnd: [UInt8]? {
            switch self {
            case .wrongAtOpen, .noneAtAll: nil
            case .wrongAtEnd, .rightAtOpenWrongAtEnd: Self.wrong
            }
        }
    }

    @Test(arguments: Announced.allCases)
    func aChecksumMismatchIsRefusedAndTheUploadIsGone(_ announced: Announced) async throws {
        try await TestBus.with { bus in
            let bob = try await bus.client("bob")
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            let data = ByteBuffer(string: "the payload")
            try await alice.send(
                .streamOpen(
                    StreamOpen(
                        ref: 1, streamID: "s1", target: .agent("bob"), totalSize: UInt64(data.readableBytes),
                        chunkSize: 1 << 20, sha256: announced.atOpen)))
            guard case .streamStatus = try await alice.read() else { Issue.record("expected STREAM_STATUS"); return }
            try await alice.send(.streamChunk(StreamChunk(streamID: "s1", index: 0, data: data)))
            try await alice.send(.streamEnd(StreamEnd(ref: 2, streamID: "s1", sha256: announced.atEnd)))
            var answer = try await alice.read()
            while case .streamStatus = answer { answer = try await alice.read() }
            guard case .error(let error) = answer else {
                Issue.record("expected ERROR, got \(String(describing: answer))"); return
            }
            #expect(error.ref == 2 && error.error.code == .checksumMismatch)
            try await alice.send(.streamResume(StreamRef(ref: 3, streamID: "s1")))
            guard case .error(let gone) = try await alice.read() else { Issue.record("expected ERROR"); return }
            #expect(gone.ref == 3 && gone.error.code == .unknownStream)
            await bob.close()
        }
    }

    @Test func aChecksumGivenAtTheEndIsCheckedAndTheReceiverIsToldIt() async throws {
        try await TestBus.with { bus in
            var bob = try await bus.raw()
            _ = try await bob.hello(try await bus.token("bob"))
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            try await alice.send(
                .streamOpen(
                    StreamOpen(
                        ref: 1, streamID: "s1", target: .agent("bob"), totalSize: 11, chunkSize: 6,
                        sha256: StreamOpen.checksumAtEnd)))
            guard case .streamStatus = try await alice.read() else { Issue.record("expected STREAM_STATUS"); return }
            try await alice.send(
                .streamChunk(StreamChunk(streamID: "s1", index: 0, data: ByteBuffer(string: "the pa"))))
            try await alice.send(.streamChunk(StreamChunk(streamID: "s1", index: 1, data: ByteBuffer(string: "yload"))))
            try await alice.send(.streamEnd(StreamEnd(ref: 2, streamID: "s1", sha256: Announced.right)))
            var answer = try await alice.read()
            while case .streamStatus = answer { answer = try await alice.read() }
            guard case .ok(let ok) = answer else {
                Issue.record("expected OK, got \(String(describing: answer))"); return
            }
            #expect(ok.ref == 2 && ok.outcome == .delivered)
            guard case .streamOpen(let delivered) = try await bob.read() else {
                Issue.record("expected the download's STREAM_OPEN"); return
            }
            #expect(delivered.sha256 == Announced.right && delivered.totalSize == 11)
        }
    }

    @Test func aChunkOutOfOrderAbortsTheStream() async throws {
        try await TestBus.with { bus in
            let bob = try await bus.client("bob")
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            try await alice.send(
                .streamOpen(
                    StreamOpen(
                        ref: 1, streamID: "s1", target: .agent("bob"),
                        totalSize: 10, chunkSize: 5, sha256: Array(repeating: 0, count: 32))))
            _ = try await alice.read()
            try await alice.send(.streamChunk(StreamChunk(streamID: "s1", index: 1, data: ByteBuffer(string: "abcde"))))
            guard case .streamAbort(let abort) = try await alice.read() else { Issue.record("expected ABORT"); return }
            #expect(abort.code == .badFrame)
            await bob.close()
        }
    }

    /// A source that cuts the client's connection just before it first hands out the byte at `cutAt`
    /// (the client reads it once, hashing what it sends, and gives the SHA-256 in STREAM_END).
    final class CuttingSource: StreamSource {
        let base: BufferSource
        let cutAt: UInt64
        let cut: @Sendable () -> Void
        let done = Atomic(false)
        var size: UInt64 { base.size }

        init(base: BufferSource, cutAt: UInt64, cut: @escaping @Sendable () -> Void) {
            self.base = base
            self.cutAt = cutAt
            self.cut = cut
        }

        var didCut: Bool { done.load(ordering: .relaxed) }

        func read(offset: UInt64, count: Int) throws -> ByteBuffer {
            if offset >= cutAt,
                done.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
            {
                cut()
            }
            return try base.read(offset: offset, count: count)
        }
    }

    @Test func aBrokenUploadResumesFromTheLastStoredChunk() async throws {
        try await TestBus.with({ $0.supervisor.limits.chunkSize = 16 << 10 }) { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let payload = Self.payload(1 << 20)
            let source = CuttingSource(base: BufferSource(payload), cutAt: 256 << 10) { alice.dropConnection() }
            let reports = Mutex<[UInt64]>([])
            try await alice.upload(to: .agent("bob"), from: source) { stored, _ in
                reports.withLock { $0.append(stored) }
            }
            let seen = reports.withLock { $0 }
            #expect(source.didCut)
            #expect(bus.audit.count("session.opened") == 3, "alice, bob, and alice again after the cut")
            #expect(seen == seen.sorted() && seen.last == 1 << 20, "after the cut it went on, never from 0")
            var streams = bob.streams.makeAsyncIterator()
            let stream = try await streams.take()
            #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
            try? FileManager.default.removeItem(atPath: stream.path)
            await alice.close()
            await bob.close()
        }
    }

    /// A sealed upload re-reads what the bus had not stored after a resume: those messages encrypt
    /// again to the same bytes, so the SHA-256 given at the end and the opened plaintext are right.
    @Test func aBrokenSealedUploadResumesAndOpens() async throws {
        try await TestBus.with({ $0.supervisor.limits.chunkSize = 64 << 10 }) { bus in
            let alice = try await bus.client("alice") { $0.keys = .generate() }
            let bob = try await bus.client("bob") {
                $0.keys = .generate()
                $0.downloadDirectory = NSTemporaryDirectory()
            }
            let message = 1 << 20  // a sealed stream's plaintext bytes per message
            let payload = Self.payload(2 * message + 1_000)
            let source = CuttingSource(base: BufferSource(payload), cutAt: UInt64(message)) {
                alice.dropConnection()
            }
            try await alice.upload(to: .agent("bob"), from: source, sealed: true)
            #expect(source.didCut)
            #expect(bus.audit.count("session.opened") == 3, "alice, bob, and alice again after the cut")
            var streams = bob.streams.makeAsyncIterator()
            let stream = try await streams.take()
            #expect(stream.sealedBy == .agent && stream.size == UInt64(payload.readableBytes))
            #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
            try? FileManager.default.removeItem(atPath: stream.path)
            await alice.close()
            await bob.close()
        }
    }

    /// Cuts a client's connection once its download has passed `cutAt` bytes, and records progress.
    final class DownloadCutter: Sendable {
        let cutAt: UInt64
        let client = Mutex<ACBClient?>(nil)
        let didCut = Atomic(false)
        let progress = Mutex<[UInt64]>([])

        init(cutAt: UInt64) { self.cutAt = cutAt }

        func received(_ bytes: UInt64) {
            progress.withLock { $0.append(bytes) }
            if bytes >= cutAt, didCut.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
                client.withLock { $0 }?.dropConnection()
            }
        }
    }

    @Test func aBrokenDownloadResumesWhereItStopped() async throws {
        try await TestBus.with({ $0.supervisor.limits.chunkSize = 16 << 10 }) { bus in
            let alice = try await bus.client("alice")
            let cutter = DownloadCutter(cutAt: 256 << 10)
            let bob = try await bus.client("bob") { configuration in
                configuration.downloadProgress = { _, received, _ in cutter.received(received) }
            }
            cutter.client.withLock { $0 = bob }
            let payload = Self.payload(1 << 20)
            try await alice.upload(to: .agent("bob"), from: BufferSource(payload), streamID: "big")
            var streams = bob.streams.makeAsyncIterator()
            let stream = try await streams.take()
            let didCut = cutter.didCut.load(ordering: .relaxed)
            #expect(didCut)
            #expect(bus.audit.count("session.opened") == 3, "alice, bob, and bob again after the cut")
            let seen = cutter.progress.withLock { $0 }
            #expect(seen == seen.sorted() && seen.last == 1 << 20, "after the cut it went on, never from 0")
            #expect(stream.streamID == "big")
            #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
            try? FileManager.default.removeItem(atPath: stream.path)
            await alice.close()
            await bob.close()
        }
    }

    @Test func theBusSkipsTheChunksAResumingReceiverAlreadyHas() async throws {
        // 2,048 chunks of 1 KiB: the status is read long before the bus could have sent 1,950 of them.
        // The raw bob sends no heartbeats: he stays online however long the upload takes on a busy machine.
        try await TestBus.with({
            $0.supervisor.limits.chunkSize = 1 << 10
            $0.supervisor.missedHeartbeats = 1_000
        }) { bus in
            let alice = try await bus.client("alice") { $0.uploadWindow = 12 }
            let token = try await bus.token("bob")
            var bob = try await bus.raw()
            _ = try await bob.hello(token)
            try await alice.upload(to: .agent("bob"), from: BufferSource(Self.payload(2 << 20)), streamID: "big")
            guard case .streamOpen = try await bob.read() else { Issue.record("expected STREAM_OPEN"); return }
            await bob.close()

            bob = try await bus.raw()
            _ = try await bob.hello(token)
            guard case .streamOpen(let open) = try await bob.read() else {
                Issue.record("expected STREAM_OPEN"); return
            }
            #expect(open.streamID == "\(open.ref)/big" && open.chunkCount == 2048)
            try await bob.send(
                .streamStatus(
                    StreamStatus(
                        ref: open.ref, streamID: open.streamID, nextIndex: 1950,
                        bytes: 1950 << 10)))
            var indexes: [UInt32] = []
            while let frame = try await bob.read() {
                if case .streamChunk(let chunk) = frame { indexes.append(chunk.index) }
                if case .streamEnd = frame { break }
            }
            #expect(indexes.last == 2047)
            #expect(indexes.count < 2048, "chunks 0..<1950 were not all sent again")
            let resumed = indexes.drop { $0 < 1950 }
            #expect(Array(resumed) == Array(1950...2047), "from chunk 1950 on, in order")
            await alice.close()
        }
    }
}
