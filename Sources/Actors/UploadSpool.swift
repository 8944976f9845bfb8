public import Bus
import Crypto
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One stream upload in progress: its spool file, where it stands, and the running SHA-256.
///
/// The owning session feeds chunks in order; each chunk is written and hashed on the thread pool,
/// one after the other (the session chains them), so the payload is never held in memory.
public final class UploadSpool: Sendable {
    public let owner: AgentKey
    public let open: StreamOpen
    let file: SpoolFile
    private let state: NIOLockedValueBox<(assembly: StreamAssembly, hasher: SHA256)>

    init(owner: AgentKey, open: StreamOpen, file: SpoolFile, assembly: StreamAssembly) {
        self.owner = owner
        self.open = open
        self.file = file
        self.state = NIOLockedValueBox((assembly, SHA256()))
    }

    var assembly: StreamAssembly { state.withLockedValue { $0.assembly } }

    /// Checks an arriving chunk against the assembly.
    func receive(index: UInt32, length: Int) throws(BusError) -> StreamAssembly.Verdict {
        let verdict = state.withLockedValue { s in
            Result { () throws(BusError) in try s.assembly.receive(index: index, length: length) }
        }
        return try verdict.get()
    }

    /// Writes and hashes a received chunk on `pool`; completes on `loop` once it is stored.
    func store(_ data: ByteBuffer, at offset: UInt64, pool: NIOThreadPool, loop: any EventLoop) -> EventLoopFuture<Void> {
        pool.runIfActive(eventLoop: loop) { [self] in
            try file.write(data, at: offset)
            state.withLockedValue { s in
                data.withUnsafeReadableBytes { s.hasher.update(bufferPointer: $0) }
                s.assembly.stored(length: data.readableBytes)
            }
        }
    }

    /// The connection broke: chunks not yet stored must be sent again after resume.
    func rewind() {
        state.withLockedValue { $0.assembly.rewindToStored() }
    }

    /// Whether every chunk is stored and the payload's SHA-256 is the announced one.
    func verify() -> Bool {
        state.withLockedValue { s in
            s.assembly.isComplete && Array(s.hasher.finalize()) == open.sha256
        }
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
