/// Where one stream upload stands: which chunks arrived and which are safely stored.
///
/// Chunks must come in order. A chunk below the next expected index is a harmless duplicate
/// (a resend after resume); one above it is an error. The storage itself is the caller's.
public struct StreamAssembly: Sendable, Equatable {
    public let totalSize: UInt64
    public let chunkSize: UInt32
    public let chunkCount: UInt32
    /// The next chunk index the sender may send.
    public private(set) var nextIndex: UInt32 = 0
    /// Chunks `0..<storedIndex` are stored; resume restarts here.
    public private(set) var storedIndex: UInt32 = 0
    public private(set) var storedBytes: UInt64 = 0

    /// What to do with an arriving chunk.
    public enum Verdict: Sendable, Equatable {
        /// Store it at `offset`.
        case store(offset: UInt64)
        /// Already have it; drop it.
        case duplicate
    }

    /// - Throws: ``ErrorCode/invalidArgument`` for a zero size, a chunk size of 0 or over
    ///   `maxChunkSize`, or a total over `maxTotalSize`.
    public init(totalSize: UInt64, chunkSize: UInt32, maxChunkSize: UInt32, maxTotalSize: UInt64) throws(BusError) {
        guard totalSize > 0 else { throw BusError(.invalidArgument, "total_size must be positive") }
        guard totalSize <= maxTotalSize else {
            throw BusError(.tooLarge, "stream of \(totalSize) bytes exceeds the limit of \(maxTotalSize)")
        }
        guard chunkSize > 0, chunkSize <= maxChunkSize else {
            throw BusError(.invalidArgument, "chunk_size must be 1 to \(maxChunkSize)")
        }
        let count = (totalSize + UInt64(chunkSize) - 1) / UInt64(chunkSize)
        guard count <= UInt64(UInt32.max) else { throw BusError(.invalidArgument, "too many chunks") }
        self.totalSize = totalSize
        self.chunkSize = chunkSize
        self.chunkCount = UInt32(count)
    }

    /// Checks chunk `index` of `length` bytes and, if new, reserves it.
    public mutating func receive(index: UInt32, length: Int) throws(BusError) -> Verdict {
        if index < nextIndex { return .duplicate }
        guard index == nextIndex else {
            throw BusError(.badFrame, "chunk \(index) arrived out of order; expected \(nextIndex)")
        }
        guard index < chunkCount else { throw BusError(.invalidArgument, "chunk \(index) is past the end") }
        guard nextIndex - storedIndex < Limits.maxChunksInFlight else {
            throw BusError(
                .overloaded, "more than \(Limits.maxChunksInFlight) chunks wait to be stored; wait for STREAM_STATUS",
                retryAfterMs: 100)
        }
        let expected = index == chunkCount - 1 ? totalSize - UInt64(index) * UInt64(chunkSize) : UInt64(chunkSize)
        guard UInt64(length) == expected else {
            throw BusError(.invalidArgument, "chunk \(index) has \(length) bytes; expected \(expected)")
        }
        nextIndex += 1
        return .store(offset: UInt64(index) * UInt64(chunkSize))
    }

    /// Records that the oldest reserved chunk, of `length` bytes, is stored.
    /// Ignored if no chunk is reserved (the caller rewound while a write was in flight).
    public mutating func stored(length: Int) {
        guard storedIndex < nextIndex else { return }
        storedIndex += 1
        storedBytes += UInt64(length)
    }

    /// Takes chunks `0..<count` as stored already (an upload another node held, its chunks
    /// copied here). - Throws: ``ErrorCode/invalidArgument`` past the last chunk.
    public mutating func restore(storedChunks count: UInt32) throws(BusError) {
        guard count <= chunkCount else { throw BusError(.invalidArgument, "chunk \(count) is past the end") }
        (nextIndex, storedIndex) = (count, count)
        storedBytes = min(totalSize, UInt64(count) * UInt64(chunkSize))
    }

    /// The connection broke: chunks received but not stored must be sent again.
    public mutating func rewindToStored() {
        nextIndex = storedIndex
    }

    /// Every chunk is stored.
    public var isComplete: Bool { storedIndex == chunkCount }
}
