public import Bus
import Crypto
import Foundation
public import NIOCore

/// A stream delivered to this agent: verified against its SHA-256 and written to ``path``.
/// The file is the application's to move or delete.
public struct IncomingStream: Acknowledgeable, HandedOut {
    public var deliveryID: UInt64
    public var from: String
    public var streamID: String
    public var size: UInt64
    public var path: String
    /// Who sealed it, nil for a plaintext stream; ``path`` holds the opened plaintext.
    public var sealedBy: SealedBy?
    let connection: ClientConnection

    public func ack() { connection.done(deliveryID) }

    func handedOut() { connection.handedOut(deliveryID) }
}

/// Where an upload's bytes come from: read in chunks, never loaded whole.
public protocol StreamSource: Sendable {
    var size: UInt64 { get }
    /// The SHA-256 of all the bytes, if known without reading them (nil: the upload computes it as it
    /// sends them, and gives it in STREAM_END).
    var knownSHA256: [UInt8]? { get }
    /// Bytes `offset..<offset+count`.
    func read(offset: UInt64, count: Int) throws -> ByteBuffer
}

extension StreamSource {
    public var knownSHA256: [UInt8]? { nil }
}

/// A file on disk as a stream source.
public struct FileSource: StreamSource {
    public let path: String
    public let size: UInt64

    public init(path: String) throws {
        self.path = path
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        self.size = (attributes[.size] as? NSNumber)?.uint64Value ?? 0
    }

    public func read(offset: UInt64, count: Int) throws -> ByteBuffer {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw BusError(.invalidArgument, "cannot open \(path)")
        }
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        return ByteBuffer(bytes: try handle.read(upToCount: count) ?? Data())
    }
}

/// Bytes in memory as a stream source.
public struct BufferSource: StreamSource {
    public let buffer: ByteBuffer
    public init(_ buffer: ByteBuffer) { self.buffer = buffer }
    public var size: UInt64 { UInt64(buffer.readableBytes) }
    public func read(offset: UInt64, count: Int) throws -> ByteBuffer {
        buffer.getSlice(at: buffer.readerIndex + Int(offset), length: count)!
    }
}

extension ACBClient {
    /// Uploads a payload of any size to one agent as a chunked stream with a SHA-256 checksum.
    ///
    /// If the connection breaks, the upload waits for the client to reconnect, asks the bus how far
    /// it got (STREAM_RESUME) and sends only the rest. A bus that no longer has it (the client
    /// moved to another node of a cluster, or the bus restarted) gets it again from the start.
    /// - Parameters:
    ///   - streamID: names the upload for resumption; a fresh UUID by default.
    ///   - progress: called with bytes stored by the bus and the total.
    ///   - sealed: encrypt it end to end for the agent `target` names (``SealedSource``); the sizes
    ///     the bus and `progress` see are the sealed stream's.
    /// - Returns: the bus's OK once the receiver has it (verified on the bus).
    /// - Throws: the bus's ``BusError`` if it refuses or aborts the upload.
    @discardableResult
    public func upload(
        to target: Target, from source: some StreamSource, streamID: String? = nil,
        progress: (@Sendable (UInt64, UInt64) -> Void)? = nil, sealed: Bool = false
    ) async throws -> Ok {
        guard !sealed else {
            guard target.kind == .agent else {
                throw SealError(.needsAgent, "sealing needs an agent by id: a capability names no keys")
            }
            let recipient = try await peerKeys(target.name)
            let sealedSource = try SealedSource(source, to: recipient, from: try keyRing.own())
            return try await upload(to: target, from: sealedSource, streamID: streamID, progress: progress)
        }
        let streamID = streamID ?? UUID().uuidString
        var connection = try currentConnection()
        let chunkSize = connection.welcome.limits.chunkSize
        let open = StreamOpen(
            ref: 0, streamID: streamID, target: target, totalSize: source.size,
            chunkSize: chunkSize, sha256: source.knownSHA256 ?? StreamOpen.checksumAtEnd)
        var digest = source.knownSHA256 == nil ? UploadDigest() : nil
        var statuses = connection.watchUpload(streamID)
        let opening = { (ref: UInt64) -> Frame in
            var frame = open
            frame.ref = ref
            return .streamOpen(frame)
        }
        var next = try await startOrResume(connection, opening)
        while true {
            do {
                try await sendChunks(
                    open, from: next, source: source, digest: &digest, connection: connection, statuses: statuses,
                    progress: progress)
                let sha256 = digest?.finalize()
                let frame = try await connection.call {
                    .streamEnd(StreamEnd(ref: $0, streamID: streamID, sha256: sha256))
                }
                connection.unwatchUpload(streamID)
                guard case .ok(let ok) = frame else { throw Self.unexpected(frame) }
                return ok
            } catch let error as BusError where error.code == .unavailable && configuration.reconnect {
                connection = try await nextConnection()
                statuses = connection.watchUpload(streamID)
                do {
                    next = try await resume(streamID, on: connection)
                } catch let error as BusError where error.code == .unknownStream {
                    digest = source.knownSHA256 == nil ? UploadDigest() : nil
                    next = try await startOrResume(connection, opening)
                }
            }
        }
    }

    /// STREAM_RESUME, retried for a moment while the bus may still be closing the old connection
    /// (until it has, the upload is not yet parked and the bus answers `unknown_stream`).
    private func resume(_ streamID: String, on connection: ClientConnection) async throws -> UInt32 {
        var attempt = 0
        while true {
            do {
                return try await startOrResume(connection) { .streamResume(StreamRef(ref: $0, streamID: streamID)) }
            } catch let error as BusError where error.code == .unknownStream && attempt < 20 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private func startOrResume(_ connection: ClientConnection, _ build: (UInt64) -> Frame) async throws -> UInt32 {
        let frame = try await connection.call(build)
        guard case .streamStatus(let status) = frame else { throw Self.unexpected(frame) }
        return status.nextIndex
    }

    /// Sends chunks from `first`, keeping at most `uploadWindow` unconfirmed.
    private func sendChunks(
        _ open: StreamOpen, from first: UInt32, source: some StreamSource, digest: inout UploadDigest?,
        connection: ClientConnection, statuses: AsyncThrowingStream<StreamStatus, any Error>,
        progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) async throws {
        let count = UInt32(open.chunkCount)
        var stored = first
        var sent = first
        var updates = statuses.makeAsyncIterator()
        while stored < count {
            while sent < count, sent - stored < configuration.uploadWindow {
                let offset = UInt64(sent) * UInt64(open.chunkSize)
                let length = Int(min(UInt64(open.chunkSize), open.totalSize - offset))
                let data = try source.read(offset: offset, count: length)
                digest?.add(data, index: sent)
                connection.fire(.streamChunk(StreamChunk(streamID: open.streamID, index: sent, data: data)))
                sent += 1
            }
            guard let status = try await updates.next() else { throw ClientConnection.closedError }
            stored = max(stored, status.nextIndex)
            progress?(status.bytes, open.totalSize)
        }
    }

}

/// The SHA-256 of an upload computed as its chunks go out, each the first time: chunks sent again
/// after a resume were hashed already.
struct UploadDigest {
    private var hasher = SHA256()
    private var hashed: UInt32 = 0

    mutating func add(_ chunk: ByteBuffer, index: UInt32) {
        guard index == hashed else { return }
        chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        hashed += 1
    }

    func finalize() -> [UInt8] { Array(hasher.finalize()) }
}
