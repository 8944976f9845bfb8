import ACBClient
import NIOCore

/// Answers every request with its own payload; with a sealer, opens a sealed request and seals
/// the reply to it (a request that does not open goes unanswered).
final class Responder: Behaviour {
    private let sealer: BoxSealer?

    init(sealer: BoxSealer? = nil) { self.sealer = sealer }

    func received(_ event: WireEvent, outbox: any Outbox) {
        guard case .message(let payload, let reply?) = event else { return }
        guard let sealer else { return outbox.reply(reply, payload) }
        guard let request = try? sealer.openRequest(Array(payload.readableBytesView)) else { return }
        outbox.reply(reply, ByteBuffer(bytes: sealer.sealReply(request.payload, to: request.nonce)))
    }
}
