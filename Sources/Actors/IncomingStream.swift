import Bus
import Crypto

/// A stream another node relays to one of this node's agents, on its way into a spool file.
struct IncomingStream: Sendable {
    /// Most streams on their way between this node and the others at once, either way.
    static let most = Limits.maxOpenUploads * 64

    var tenant: String
    var from: String
    var to: String
    var open: StreamOpen
    let file: SpoolFile
    var cursor = PartCursor()
    var hash = SHA256()
    /// When its STREAM_OPEN came (monotonic ms): one not finished within the resume window is dropped.
    let openedMs: UInt64
}
