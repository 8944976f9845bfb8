import ACBClient
import Bus
import Crypto
import Foundation
import Gateway
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import Actors

/// The parking lot of broken uploads: bounded per owner, and what goes first is defined.
@Suite struct StreamStoreTests {
    static let alice = AgentKey(tenant: "acme", agentID: "alice")

    static func spool(_ id: String) throws -> UploadSpool {
        UploadSpool(
            owner: alice,
            open: StreamOpen(
                ref: 1, streamID: id, target: .agent("bob"), totalSize: 10, chunkSize: 5,
                sha256: Array(repeating: 0, count: 32)),
            file: SpoolFile(path: "/nonexistent/\(id)"),
            assembly: try StreamAssembly(totalSize: 10, chunkSize: 5, maxChunkSize: 5, maxTotalSize: 10))
    }

    /// One disconnect parks all of a session's uploads at the same moment: of those, the one opened
    /// first is dropped when the owner has too many.
    @Test func ofUploadsParkedAtOnceTheFirstOpenedIsDroppedFirst() throws {
        let store = StreamStore(ttlMs: 60_000)
        let ready = EmbeddedEventLoop().makeSucceededVoidFuture()
        let spools = try (0...Limits.maxOpenUploads).map { try Self.spool("s\($0)") }
        for spool in spools { store.park(spool, chain: ready, now: 1_000) }
        #expect(store.count == Limits.maxOpenUploads)
        #expect(store.take(owner: Self.alice, streamID: "s0", now: 1_000) == nil)
        for index in 1...Limits.maxOpenUploads {
            #expect(store.take(owner: Self.alice, streamID: "s\(index)", now: 1_000) != nil, "s\(index)")
        }
    }

    /// Parked earlier goes before parked later, whatever the order of opening.
    @Test func anUploadParkedEarlierIsDroppedBeforeOneParkedLater() throws {
        let store = StreamStore(ttlMs: 60_000)
        let ready = EmbeddedEventLoop().makeSucceededVoidFuture()
        let spools = try (0...Limits.maxOpenUploads).map { try Self.spool("s\($0)") }
        store.park(spools[Limits.maxOpenUploads], chain: ready, now: 1_000)
        for spool in spools.dropLast() { store.park(spool, chain: ready, now: 2_000) }
        #expect(store.take(owner: Self.alice, streamID: "s\(Limits.maxOpenUploads)", now: 2_000) == nil)
        #expect(store.take(owner: Self.alice, streamID: "s0", now: 2_000) != nil)
    }

    /// Nothing blocks where a spool file is made or dropped: the first write creates it, and the
    /// last reference going closes and unlinks it on NIO's thread pool.
    @Test func aSpoolFileIsMadeByItsFirstWriteAndGoesWithItsLastReference() async throws {
        let path = NSTemporaryDirectory() + "acb-spool-\(UUID().uuidString)"
        var file: SpoolFile? = SpoolFile(path: path)
        #expect(!FileManager.default.fileExists(atPath: path))
        try file?.write(ByteBuffer(string: "abc"), at: 0)
        #expect(FileManager.default.fileExists(atPath: path))
        file = nil
        try await Sidecars.eventually("the file to be unlinked") { !FileManager.default.fileExists(atPath: path) }
    }

    /// An upload parked by a connection whose last writes are still running (`chain`), as the
    /// bus parks one when the connection breaks.
    static func parkUnfinished(_ payload: ByteBuffer, chunkSize: UInt32, on bus: TestBus) throws -> EventLoopPromise<
        Void
    > {
        let supervisor = bus.server.supervisor
        let open = StreamOpen(
            ref: 1, streamID: "s1", target: .agent("bob"), totalSize: UInt64(payload.readableBytes),
            chunkSize: chunkSize, sha256: Array(SHA256.hash(data: Data(payload.readableBytesView))))
        let spool = UploadSpool(
            owner: alice, open: open,
            file: SpoolFile(path: "\(supervisor.configuration.streamDirectory)/parked-\(UUID().uuidString)"),
            assembly: try StreamAssembly(
                totalSize: open.totalSize, chunkSize: chunkSize,
                maxChunkSize: supervisor.configuration.limits.chunkSize,
                maxTotalSize: supervisor.configuration.maxStreamBytes))
        let writes = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
        supervisor.streams.park(spool, chain: writes.futureResult, now: MonotonicClock.nowMs())
        return writes
    }

    /// `frames` in one write, as a client that pipelines sends them.
    static func write(_ frames: [Frame], to raw: RawConnection) async throws {
        var bytes = ByteBuffer()
        for frame in frames { frame.encode(into: &bytes) }
        try await raw.send(bytes)
    }

    /// Chunks and END written behind STREAM_RESUME while the old connection's writes still run are
    /// held, then taken once the resume is answered (they were refused `unknown_stream` before).
    @Test func framesBehindAResumeWaitForTheOldWritesAndAreThenTaken() async throws {
        try await TestBus.with { bus in
            let bob = try await bus.client("bob")
            let payload = ByteBuffer(string: "hello")
            let writes = try Self.parkUnfinished(payload, chunkSize: 5, on: bus)
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            try await Self.write(
                [
                    .streamResume(StreamRef(ref: 2, streamID: "s1")),
                    .streamChunk(StreamChunk(streamID: "s1", index: 0, data: payload)),
                    .streamEnd(StreamEnd(ref: 3, streamID: "s1")),
                ], to: alice)
            writes.succeed()
            guard case .streamStatus(let resumed) = try await alice.read() else { Issue.record("no answer"); return }
            #expect(resumed.ref == 2 && resumed.nextIndex == 0)
            var answer = try await alice.read()
            while case .streamStatus = answer { answer = try await alice.read() }
            #expect(answer == .ok(Ok(ref: 3, outcome: .delivered, recipients: 1)))
            var streams = bob.streams.makeAsyncIterator()
            let stream = try await streams.take()
            #expect(FileManager.default.contents(atPath: stream.path) == Data("hello".utf8))
            try? FileManager.default.removeItem(atPath: stream.path)
            await bob.close()
        }
    }

    /// At most 16 frames are held behind a resume: one more aborts the upload (`overloaded`), and
    /// the resume is then answered `unknown_stream`; nothing of it stays parked.
    @Test func tooManyFramesBehindAResumeAbortTheUpload() async throws {
        try await TestBus.with { bus in
            let bob = try await bus.client("bob")
            let payload = ByteBuffer(repeating: 7, count: 100)
            let writes = try Self.parkUnfinished(payload, chunkSize: 5, on: bus)
            var alice = try await bus.raw()
            _ = try await alice.hello(try await bus.token("alice"))
            let chunks = (0..<17).map { index -> Frame in
                .streamChunk(
                    StreamChunk(streamID: "s1", index: UInt32(index), data: ByteBuffer(repeating: 7, count: 5)))
            }
            try await Self.write([.streamResume(StreamRef(ref: 2, streamID: "s1"))] + chunks, to: alice)
            guard case .streamAbort(let abort) = try await alice.read() else { Issue.record("no ABORT"); return }
            #expect(abort.streamID == "s1" && abort.code == .overloaded)
            writes.succeed()
            guard case .error(let error) = try await alice.read() else { Issue.record("no answer"); return }
            #expect(error.ref == 2 && error.error.code == .unknownStream)
            #expect(bus.server.supervisor.streams.count == 0)
            await bob.close()
        }
    }
}
