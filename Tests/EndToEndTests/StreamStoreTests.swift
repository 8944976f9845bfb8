import Bus
import NIOCore
import NIOEmbedded
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
}
