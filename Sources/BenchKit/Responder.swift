/// Answers every request with its own payload.
final class Responder: Behaviour {
    func received(_ event: WireEvent, outbox: any Outbox) {
        guard case .message(let payload, let reply?) = event else { return }
        outbox.reply(reply, payload)
    }
}
