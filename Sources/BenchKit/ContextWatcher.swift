import NIOCore

/// Watches one context: checks that every version arrives, once and in order (``VersionTally``),
/// and records each change's latency from when its writer sent it (the body's ``ContextStamp``).
final class ContextWatcher: Behaviour {
    private let key: ContextKey
    /// Keeps the connection alive while changes only come in (ACB closes silent sessions).
    private let presence = Bystander()
    /// The server confirmed the watch.
    private(set) var isWatching = false
    /// The code of the ERROR that refused or ended the watch (`overloaded` when it fell behind).
    private(set) var failure: String?
    private(set) var tally = VersionTally()
    private(set) var latency = LatencyRecorder()
    /// When the last change arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0

    init(key: ContextKey) { self.key = key }

    func attached(_ outbox: any Outbox) {
        presence.attached(outbox)
        outbox.context(.watch(key))
        outbox.flush()
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        presence.received(event, outbox: outbox)
        switch event {
        case .synced: isWatching = true
        case .changed(let version, let body):
            tally.record(version)
            lastArrival = Stamp.now()
            if let stamp = ContextStamp.read(body) { latency.record(nanoseconds: lastArrival &- stamp.nanos) }
        case .refused(let code):
            if failure == nil { failure = code }
        default: return
        }
    }
}
