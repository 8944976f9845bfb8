import ACBClient
import NIOCore

/// Makes requests to one responder and times each until its reply.
///
/// With a sealer (closed loop only: one request in flight), each request is sealed and its reply
/// opened with its nonce; a reply that does not open is lost.
///
/// Closed loop keeps one request in flight. Open loop sends on a fixed schedule whatever the
/// replies do, and times each request from when it was due, so a stall shows in the latency
/// instead of hiding in a slower send rate (no coordinated omission).
final class Requester: PacedSender {
    /// Most requests in flight in open loop (its pace's `maxOutstanding`); a due request beyond it is
    /// counted as skipped.
    static let maxOutstanding: UInt64 = 10_000

    private let responder: String
    private var stamp: Stamp
    private let sealer: BoxSealer?
    /// With a sealer: the nonces of the requests in flight, oldest first.
    private var nonces: [[UInt8]] = []
    var loop: SendLoop
    private(set) var counts = SendCounts()
    private(set) var tally = SequenceTally()
    private(set) var latency = LatencyRecorder()
    /// When the last reply arrived, in ``Stamp/now()`` nanoseconds.
    private(set) var lastArrival: UInt64 = 0

    init(responder: String, pace: SendLoop.Pace, limit: UInt64, payloadBytes: Int, sealer: BoxSealer? = nil) {
        self.responder = responder
        self.sealer = sealer
        self.stamp = Stamp(payloadBytes: payloadBytes)
        self.loop = SendLoop(pace: pace, limit: limit)
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch event {
        case .reply(let payload):
            guard let stamp = opened(payload).flatMap(Stamp.read) else { return }
            tally.record(stamp.sequence)
            lastArrival = Stamp.now()
            latency.record(nanoseconds: lastArrival &- stamp.nanos)
            counts.accepted += 1
        case .refused(let code): counts.refused[code, default: 0] += 1
        default: return
        }
        pump()
    }

    /// Sends one request, stamped with the moment it was due: now in closed loop.
    func send(scheduled: UInt64?, on outbox: any Outbox) {
        var payload = stamp.payload(sequence: counts.sent, nanos: scheduled ?? Stamp.now())
        if let sealer {
            let request = sealer.sealRequest(Array(payload.readableBytesView))
            nonces.append(request.nonce)
            payload = ByteBuffer(bytes: request.sealed)
        }
        outbox.request(to: responder, payload)
        counts.sent += 1
    }

    /// A reply's payload, opened when sealed; nil when it does not open.
    private func opened(_ payload: ByteBuffer) -> ByteBuffer? {
        guard let sealer else { return payload }
        guard !nonces.isEmpty else { return nil }
        let nonce = nonces.removeFirst()
        return (try? sealer.openReply(Array(payload.readableBytesView), nonce: nonce)).map { ByteBuffer(bytes: $0) }
    }
}
