import NIOCore

/// Counts what arrives by sequence number, records each message's latency from its stamp, and
/// gives its producer credit back once per read batch.
final class Consumer: Behaviour {
    private let producer: NIOLoopBound<Producer>?
    /// Which of the producer's receivers this is.
    private let index: Int
    private(set) var tally = SequenceTally()
    private(set) var latency = LatencyRecorder()
    private var credit = 0

    init(producer: NIOLoopBound<Producer>?, index: Int) {
        self.producer = producer
        self.index = index
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        guard case .message(let payload, _) = event, let stamp = Stamp.read(payload) else { return }
        tally.record(stamp.sequence)
        latency.record(nanoseconds: Stamp.now() &- stamp.nanos)
        credit += 1
    }

    func readComplete(_ outbox: any Outbox) {
        guard credit > 0, let producer else { return }
        let (messages, index) = (credit, index)
        credit = 0
        producer.eventLoop.execute { producer.value.grant(messages, from: index) }
    }
}
