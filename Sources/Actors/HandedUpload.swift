import Bus
import NIOCore

/// A parked upload another node hands this one (its agent resumed it here after its connection
/// broke there), its stored chunks on their way into a spool of this node, a part at a time.
struct HandedUpload: Sendable {
    /// How long a handover waits for its next part before it fails (the other node died).
    static let partTimeoutMs: UInt64 = 10_000

    /// Where the parts go; its assembly is restored already.
    let spool: UploadSpool
    /// Succeeds once every part is written, fails if one is out of place or stops coming.
    let done: EventLoopPromise<Void>
    var cursor = PartCursor()
    /// When the last part came (monotonic ms).
    var lastMs: UInt64
}
