import Bus
import NIOConcurrencyHelpers

/// Uploads whose connection broke, kept for a while so the sender can resume them.
///
/// Bounded in time (`ttlMs`) rather than count: each parked upload's bytes are on disk, not in memory.
public final class StreamStore: Sendable {
    private struct Key: Hashable {
        var owner: AgentKey
        var streamID: String
    }

    private let ttlMs: UInt64
    private let parked = NIOLockedValueBox([Key: (spool: UploadSpool, at: UInt64)]())

    init(ttlMs: UInt64) { self.ttlMs = ttlMs }

    /// Keeps `spool` for resumption.
    func park(_ spool: UploadSpool, now: UInt64) {
        spool.rewind()
        parked.withLockedValue { parked in
            parked = parked.filter { $0.value.at + ttlMs > now }
            parked[Key(owner: spool.owner, streamID: spool.open.streamID)] = (spool, now)
        }
    }

    /// Takes back a parked upload of `owner`, if it has not expired.
    func take(owner: AgentKey, streamID: String, now: UInt64) -> UploadSpool? {
        parked.withLockedValue { parked in
            guard let entry = parked.removeValue(forKey: Key(owner: owner, streamID: streamID)),
                  entry.at + ttlMs > now
            else { return nil }
            return entry.spool
        }
    }

    /// Uploads parked now.
    public var count: Int { parked.withLockedValue { $0.count } }
}
