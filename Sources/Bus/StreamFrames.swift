public import NIOCore

/// STREAM_OPEN: a payload too large to send inline follows as chunks.
///
/// From a sender, `ref` is its command reference and `target` the receiver. From the server to a
/// receiver, `ref` is the delivery id to ACK once the stream is complete and `target` names the sender.
public struct StreamOpen: FrameBody {
    public var ref: UInt64
    /// Chosen by the sender, unique among its open streams; it names the stream when resuming.
    public var streamID: String
    public var target: Target
    public var totalSize: UInt64
    /// Every chunk but the last has exactly this many bytes (at most the WELCOME chunk size).
    public var chunkSize: UInt32
    /// SHA-256 of the whole payload, 32 bytes; from a sender, ``checksumAtEnd`` (all zero) to give
    /// it in STREAM_END instead, after one pass over the payload.
    public var sha256: [UInt8]
    public var deadline: UInt64?

    public init(
        ref: UInt64, streamID: String, target: Target, totalSize: UInt64, chunkSize: UInt32,
        sha256: [UInt8], deadline: UInt64? = nil
    ) {
        self.ref = ref
        self.streamID = streamID
        self.target = target
        self.totalSize = totalSize
        self.chunkSize = chunkSize
        self.sha256 = sha256
        self.deadline = deadline
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), streamID: try r.string("stream_id"), target: try Target(reading: &r),
            totalSize: try r.u64("total_size"), chunkSize: try r.u32("chunk_size"),
            sha256: try r.fixed(32, "sha256"), deadline: try r.u64("deadline_ms").deadlineFromWire)
    }

    public func write(to b: inout ByteBuffer) {
        precondition(sha256.count == 32, "sha256 must be 32 bytes")
        b.writeInteger(ref)
        b.writeWireString(streamID)
        target.write(to: &b)
        b.writeInteger(totalSize)
        b.writeInteger(chunkSize)
        b.writeBytes(sha256)
        b.writeInteger(deadline.wireDeadline)
    }

    /// The `sha256` of a STREAM_OPEN whose SHA-256 comes in its STREAM_END (docs/protocol.md 4.18).
    public static let checksumAtEnd = [UInt8](repeating: 0, count: 32)

    /// How many chunks a payload of `totalSize` bytes takes.
    public var chunkCount: UInt64 {
        chunkSize == 0 ? 0 : (totalSize + UInt64(chunkSize) - 1) / UInt64(chunkSize)
    }
}

/// STREAM_CHUNK: chunk `index` (from 0) of a stream.
public struct StreamChunk: FrameBody {
    public var streamID: String
    public var index: UInt32
    public var data: ByteBuffer

    public init(streamID: String, index: UInt32, data: ByteBuffer) {
        self.streamID = streamID
        self.index = index
        self.data = data
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(streamID: try r.string("stream_id"), index: try r.u32("index"), data: try r.bytes("data"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeWireString(streamID)
        b.writeInteger(index)
        b.writeWireBytes(data)
    }
}

/// STREAM_END: from a sender, every chunk is sent (verify and deliver); from the server, the last
/// chunk of a download is sent.
public struct StreamEnd: FrameBody {
    public var ref: UInt64
    public var streamID: String
    /// From a sender whose STREAM_OPEN gave ``StreamOpen/checksumAtEnd``: the payload's SHA-256,
    /// the optional last field (32 bytes). Nil: absent.
    public var sha256: [UInt8]?

    public init(ref: UInt64, streamID: String, sha256: [UInt8]? = nil) {
        self.ref = ref
        self.streamID = streamID
        self.sha256 = sha256
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), streamID: try r.string("stream_id"),
            sha256: r.isAtEnd ? nil : try r.fixed(32, "sha256"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(streamID)
        if let sha256 {
            precondition(sha256.count == 32, "sha256 must be 32 bytes")
            b.writeBytes(sha256)
        }
    }
}

/// STREAM_RESUME: where does this stream stand?
public struct StreamRef: FrameBody {
    public var ref: UInt64
    public var streamID: String

    public init(ref: UInt64, streamID: String) {
        self.ref = ref
        self.streamID = streamID
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"), streamID: try r.string("stream_id"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(streamID)
    }
}

/// STREAM_STATUS: chunks `0..<nextIndex` of the stream (`bytes` in all) are safely held.
///
/// From the server: it stored them; sent in answer to STREAM_OPEN and STREAM_RESUME (with their
/// `ref`) and after every stored chunk (ref 0). From a receiver, in answer to a download's
/// STREAM_OPEN (`ref` = its delivery id): it kept them from an earlier, broken attempt of the same
/// stream, and the server continues from `nextIndex`.
public struct StreamStatus: FrameBody {
    public var ref: UInt64
    public var streamID: String
    public var nextIndex: UInt32
    public var bytes: UInt64

    public init(ref: UInt64, streamID: String, nextIndex: UInt32, bytes: UInt64) {
        self.ref = ref
        self.streamID = streamID
        self.nextIndex = nextIndex
        self.bytes = bytes
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), streamID: try r.string("stream_id"), nextIndex: try r.u32("next_index"),
            bytes: try r.u64("bytes"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(streamID)
        b.writeInteger(nextIndex)
        b.writeInteger(bytes)
    }
}

/// STREAM_ABORT: either side gives up a stream; the server discards what it stored.
public struct StreamAbort: FrameBody {
    public var streamID: String
    public var code: ErrorCode
    public var message: String

    public init(streamID: String, code: ErrorCode, message: String) {
        self.streamID = streamID
        self.code = code
        self.message = message
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let id = try r.string("stream_id")
        let raw = try r.u16("code")
        self.init(streamID: id, code: ErrorCode(rawValue: raw) ?? .internal, message: try r.string("message"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeWireString(streamID)
        b.writeInteger(code.rawValue)
        b.writeWireMessage(message)
    }
}
