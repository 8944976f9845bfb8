import Bus
import NIOConcurrencyHelpers
import NIOCore

/// Uploads whose connection broke, kept for a while so the sender can resume them.
///
/// Bounded in time (`ttlMs`) rather than count: each parked upload's bytes are on disk, not in memory.
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
    }

    private let parked = NIOLockedValueBox([Key: Parked]())

    init(ttlMs: UInt64) { self.ttlMs = ttlMs }

    /// Keeps `spool` for resumption; `chain` completes when its last chunk writes have.
    func park(_ spool: UploadSpool, chain: EventLoopFuture<Void>, now: UInt64) {
        parked.withLockedValue { parked in
            parked = parked.filter { $0.value.at + ttlMs > now }
            parked[Key(owner: spool.owner, streamID: spool.open.streamID)] = Parked(spool: spool, chain: chain, at: now)
        }
    }

    /// Takes back a parked upload of `owner`, if it has not expired.
    func take(owner: AgentKey, streamID: String, now: UInt64) -> Parked? {
        parked.withLockedValue { parked in
            guard let entry = parked.removeValue(forKey: Key(owner: owner, streamID: streamID)),
                  entry.at + ttlMs > now
            else { return nil }
            return entry
        }
    }

    /// Uploads parked now.
    public var count: Int { parked.withLockedValue { $0.count } }
}
