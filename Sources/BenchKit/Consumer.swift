import ACBClient
import NIOCore

/// Counts what arrives by sequence number, records each message's latency from its stamp, and, in
/// the window shape (with a producer to report to), tells its producer how far it got once per read
/// batch. With an opener, each payload is a box to open first; one that does not open is lost.
final class Consumer: Behaviour {
    private let producer: NIOLoopBound<Producer>?
    /// Which of the producer's receivers this is.
    private let index: Int
    private let opener: BoxSealer?
    private(set) var tally = SequenceTally()
    private(set) var latency = LatencyRecorder()
    /// One past the highest sequence number received.
    private var frontier: UInt64 = 0
    /// When the last message arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0
    private var reported: (frontier: UInt64, received: UInt64) = (0, 0)

    init(producer: NIOLoopBound<Producer>?, index: Int, opener: BoxSealer? = nil) {
        self.producer = producer
        self.index = index
        self.opener = opener
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        guard case .message(let payload, _) = event, let stamp = Stamp.read(payload, opener: opener) else { return }
        tally.record(stamp.sequence)
        lastArrival = Stamp.now()
        latency.record(nanoseconds: lastArrival &- stamp.nanos)
        frontier = max(frontier, stamp.sequence + 1)
    }

    func readComplete(_ outbox: any Outbox) {
        let now = (frontier: frontier, received: tally.unique)
        guard now != reported, let producer else { return }
        reported = now
        let index = index
        producer.eventLoop.execute {
            producer.value.progress(from: index, frontier: now.frontier, received: now.received)
        }
    }
}
