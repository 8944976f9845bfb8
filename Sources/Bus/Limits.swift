/// The limits a server enforces and announces in WELCOME. Each default has a reason.
public struct Limits: Sendable, Equatable {
    /// Largest frame, length prefix excluded: one full chunk plus room for its header fields.
    public var maxFrameBytes: UInt32
    /// Largest payload sent inline; anything bigger travels as a stream (1 MiB).
    public var maxInlinePayload: UInt32
    /// Chunk size for streams (1 MiB): large enough to amortise framing, small enough to bound memory.
    public var chunkSize: UInt32
    /// Deliveries a session may have written but not acknowledged before the bus stops sending to it.
    public var maxUnacked: UInt32
    /// Requests one session may have waiting for replies.
    public var maxPendingRequests: UInt32
    /// How often an agent should send HEARTBEAT, in milliseconds.
    public var heartbeatIntervalMs: UInt32

    public init(
        maxFrameBytes: UInt32 = Limits.defaultChunkSize + 64 * 1024,
        maxInlinePayload: UInt32 = 1 << 20,
        chunkSize: UInt32 = Limits.defaultChunkSize,
        maxUnacked: UInt32 = 1024,
        maxPendingRequests: UInt32 = 1024,
        heartbeatIntervalMs: UInt32 = 5_000
    ) {
        self.maxFrameBytes = maxFrameBytes
        self.maxInlinePayload = maxInlinePayload
        self.chunkSize = chunkSize
        self.maxUnacked = maxUnacked
        self.maxPendingRequests = maxPendingRequests
        self.heartbeatIntervalMs = heartbeatIntervalMs
    }

    /// 1 MiB, the stream chunk size unless configured otherwise.
    public static let defaultChunkSize: UInt32 = 1 << 20
    /// Longest identifier (agent id, tenant, capability, stream id, idempotency key) in UTF-8 bytes.
    public static let maxIdentifierBytes = 128
    /// Longest topic or topic pattern in UTF-8 bytes.
    public static let maxTopicBytes = 256
    /// Most entries in one list field (capabilities, metadata, discovered agents).
    public static let maxListCount = 256
    /// Longest error or GOAWAY message in UTF-8 bytes; longer ones are cut.
    public static let maxMessageBytes = 1024
    /// Longest agent location in UTF-8 bytes.
    public static let maxLocationBytes = 256
    /// Longest metadata value in UTF-8 bytes.
    public static let maxMetadataValueBytes = 1024
    /// Uploads one session may have open at once.
    public static let maxOpenUploads = 16
    /// Chunks of one upload received but not yet stored on disk; a sender that outruns the disk by
    /// more is refused (`overloaded`), so an upload never holds more than this many chunks in memory.
    public static let maxChunksInFlight: UInt32 = 16
    /// Downloads one session receives at a time: each keeps one chunk pending on the socket, and
    /// together they must stay under the outbound high-water mark (4 MiB) or the session stops reading.
    public static let maxDownloadsInProgress = 2
    /// Most JSON Pointers one field-level watch may name.
    public static let maxWatchPaths = 32
    /// Most links CONTEXT_LINEAGE follows.
    public static let maxLineageDepth: UInt16 = 16
    /// Largest body a CONTEXT_EVENT carries; a larger one is announced without it (GET it).
    public static let maxEventBody = 64 << 10
    /// Longest context TTL: 30 days.
    public static let maxContextTTLMs: UInt64 = 30 * 24 * 3_600_000
    /// The newest wire protocol version this code speaks (docs/protocol.md, section 3).
    public static let protocolVersion: UInt16 = 3
    /// Every version a server accepts in HELLO: version 1 clients keep working.
    public static let protocolVersions: ClosedRange<UInt16> = 1...3
    /// Most frames a protocol 2 client may send behind HELLO before WELCOME arrives.
    public static let maxFramesBeforeWelcome = 256
}
