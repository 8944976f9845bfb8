import Bus
import NIOConcurrencyHelpers
import NIOCore

/// Uploads whose connection broke, kept for a while so the sender can resume them.
///
/// Bounded in time (`ttlMs`, checked by the supervisor's housekeeping and whenever an upload is parked
/// or resumed) and per owner in count;
/// each parked upload's bytes are on disk, not in memory.
public final class StreamStore: Sendable {
    private struct Key: Hashable {
        var owner: AgentKey
        var streamID: String
    }

    private let ttlMs: UInt64
    /// A parked upload: its spool, the chain of its last writes (still completing, perhaps), and when.
    struct Parked {
        var spool: UploadSpool
        var chain: EventLoopFuture<Void>
        var at: UInt64

        /// When it was parked, then when it was opened.
        var order: (UInt64, UInt64) { (at, spool.sequence) }
    }

    private let parked = NIOLockedValueBox([Key: Parked]())

    init(ttlMs: UInt64) { self.ttlMs = ttlMs }

    /// Keeps `spool` for resumption; `chain` completes when its last chunk writes have.
    /// An owner keeps at most ``Limits/maxOpenUploads`` parked uploads: the one parked first goes
    /// first, and of those parked at the same time the one opened first.
    func park(_ spool: UploadSpool, chain: EventLoopFuture<Void>, now: UInt64) {
        parked.withLockedValue { parked in
            expire(&parked, now: now)
            let mine = parked.filter { $0.key.owner == spool.owner }
            if mine.count >= Limits.maxOpenUploads, let oldest = mine.min(by: { $0.value.order < $1.value.order }) {
                parked[oldest.key] = nil
            }
            parked[Key(owner: spool.owner, streamID: spool.open.streamID)] = Parked(spool: spool, chain: chain, at: now)
        }
    }

    /// Takes back a parked upload of `owner`, if it has not expired.
    func take(owner: AgentKey, streamID: String, now: UInt64) -> Parked? {
        parked.withLockedValue { parked in
            expire(&parked, now: now)
            return parked.removeValue(forKey: Key(owner: owner, streamID: streamID))
        }
    }

    /// Drops expired uploads; their spool files go with the last reference.
    private func expire(_ parked: inout [Key: Parked], now: UInt64) {
        parked = parked.filter { $0.value.at + ttlMs > now }
    }

    /// Drops uploads parked longer than the resume TTL (the supervisor's housekeeping calls this).
    func expire(now: UInt64) {
        parked.withLockedValue { expire(&$0, now: now) }
    }

    /// Uploads parked now.
    public var count: Int { parked.withLockedValue { $0.count } }
}
