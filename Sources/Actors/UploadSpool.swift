public import Bus
import Crypto
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization

/// One stream upload in progress: its spool file, where it stands, and the running SHA-256.
///
/// The owning session feeds chunks in order; each chunk is written and hashed on the thread pool,
/// one after the other (the session chains them), so the payload is never held in memory.
public final class UploadSpool: Sendable {
    public let owner: AgentKey
    public let open: StreamOpen
    /// The order uploads were opened in, process-wide: among uploads parked at once, the first
    /// opened is the first dropped (docs/protocol.md §5.9).
    let sequence: UInt64
    let file: SpoolFile
    /// Taken on the event loop for every chunk; held only for bookkeeping.
    private let progress: NIOLockedValueBox<StreamAssembly>
    /// Taken on the thread pool while hashing a chunk, and once at the end.
    private let hasher = NIOLockedValueBox(SHA256())

    init(owner: AgentKey, open: StreamOpen, file: SpoolFile, assembly: StreamAssembly) {
        self.owner = owner
        self.open = open
        self.sequence = Self.opened.add(1, ordering: .relaxed).newValue
        self.file = file
        self.progress = NIOLockedValueBox(assembly)
    }

    private static let opened = Synchronization.Atomic<UInt64>(0)

    var assembly: StreamAssembly { progress.withLockedValue { $0 } }

    /// Checks an arriving chunk against the assembly.
    func receive(index: UInt32, length: Int) throws(BusError) -> StreamAssembly.Verdict {
        let verdict = progress.withLockedValue { assembly in
            Result { () throws(BusError) in try assembly.receive(index: index, length: length) }
        }
        return try verdict.get()
    }

    /// Writes and hashes a received chunk on `pool`; completes on `loop` once it is stored.
    /// The session chains these calls, so chunks are hashed in order.
    func store(_ data: ByteBuffer, at offset: UInt64, pool: NIOThreadPool, loop: any EventLoop) -> EventLoopFuture<Void>
    {
        pool.runIfActive(eventLoop: loop) { [self] in
            try append(data, at: offset)
            progress.withLockedValue { $0.stored(length: data.readableBytes) }
        }
    }

    /// Writes and hashes `data` at `offset`, blocking: the bytes that follow those hashed so far.
    /// Chunks go through ``store(_:at:pool:loop:)``; the parts of an upload another node handed
    /// over (its assembly restored up front) come straight here.
    func append(_ data: ByteBuffer, at offset: UInt64) throws(BusError) {
        try file.write(data, at: offset)
        hasher.withLockedValue { hasher in data.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) } }
    }

    /// Forgets every chunk: a handover from another node broke off, and the assembly restored for
    /// it counts chunks that never arrived. A resume then starts again at chunk 0.
    func restart() {
        progress.withLockedValue { try? $0.restore(storedChunks: 0) }
        hasher.withLockedValue { $0 = SHA256() }
    }

    /// The connection broke: chunks not yet stored must be sent again after resume.
    func rewind() {
        progress.withLockedValue { $0.rewindToStored() }
    }

    /// The payload's SHA-256 once every chunk is stored, if it is the one announced: in the STREAM_OPEN,
    /// in the STREAM_END (`atEnd`), or in both (then both must be it). Nil otherwise, or if neither
    /// announced one.
    func verified(atEnd: [UInt8]?) -> [UInt8]? {
        guard assembly.isComplete else { return nil }
        let digest = Array(hasher.withLockedValue { $0.finalize() })
        let announced = [open.sha256 == StreamOpen.checksumAtEnd ? nil : open.sha256, atEnd].compactMap { $0 }
        return !announced.isEmpty && announced.allSatisfy { $0 == digest } ? digest : nil
    }
}

/// A verified upload on its way to its receiver. The spool file goes when the last reference does.
public struct CompletedStream: Sendable {
    public var from: String
    public var open: StreamOpen
    let file: SpoolFile
    /// Delivery attempts already made.
    var attempts: UInt16 = 0
}
