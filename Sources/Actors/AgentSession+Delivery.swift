import Bus
import NIOCore

extension AgentSession {
    /// Writes what the mailbox holds: answers to this agent's requests always, messages while the
    /// unacked window has room and the socket is writable. One flush per drain.
    func drain() {
        guard state != .closed else { return }
        mailbox.beginDrain()
        let now = WallClock.nowMs()
        while let envelope = mailbox.next(takeMessage: window.hasRoom && channel.isWritable) {
            deliver(envelope, now: now)
        }
        load.inFlight = window.count
        flush()
        if state == .draining, window.count == 0, mailbox.messageCount == 0 { channel.close(promise: nil) }
    }

    private func deliver(_ envelope: Envelope, now: UInt64) {
        switch envelope {
        case .message(let message):
            if let deadline = message.deadline, deadline <= now {
                audit("message.expired", ["from": message.from])
                return
            }
            let attempt = message.attempts + 1
            let id = window.send(envelope, attempt: attempt, now: now)
            write(.deliver(Deliver(deliveryID: id, kind: message.kind, from: message.from, subject: message.subject,
                                   correlationID: message.correlationID, deadline: message.deadline,
                                   attempt: attempt, payload: message.payload)))
        case .stream(let stream):
            let id = window.send(envelope, attempt: stream.attempts + 1, now: now)
            startDownload(stream, deliveryID: id)
        case .response(let local, let from, let status, let payload):
            complete(local: local, from: from, status: status, payload: payload)
        case .requestFailed(let local, let error):
            failRequest(local: local, error)
        }
    }

    /// The socket drained below its high-water mark: resume writing deliveries.
    public func writable() {
        drain()
    }

    func handleAck(_ ack: Ack) {
        guard !window.ack(ack.deliveryID, cumulative: ack.cumulative).isEmpty else { return }
        drain()
    }

    func handleNack(_ nack: Ack) {
        guard let entry = window.remove(nack.deliveryID) else { return }
        retryOrDeadLetter(entry.item, attempts: entry.attempt, reason: .rejected)
        drain()
    }

    /// Puts a delivery back for another attempt, or dead-letters it after the last one.
    func retryOrDeadLetter(_ envelope: Envelope, attempts: UInt16, reason: ErrorCode) {
        guard attempts >= configuration.maxDeliveryAttempts else {
            return requeue([envelope.with(attempts: attempts)])
        }
        switch envelope {
        case .message(let message):
            if message.kind == .request {
                failRequester(of: message, BusError(.unavailable, "\(identity.agentID) did not acknowledge"))
            }
            supervisor.deadLetter(message, to: identity.key, reason: reason, attempts: attempts)
        case .stream(let stream):
            audit("stream.dead_lettered", ["stream": stream.open.streamID, "from": stream.from])
        case .response, .requestFailed:
            break
        }
    }
}
