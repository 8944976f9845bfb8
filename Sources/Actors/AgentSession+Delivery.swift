import Bus
import NIOCore

extension AgentSession {
    /// Writes what the mailbox holds: answers to this agent's requests always, messages while the
    /// unacked window has room and the socket is writable. One flush per drain. Nothing before
    /// WELCOME: ``start(protocolVersion:)`` asks for a drain.
    func drain() {
        guard state != .closed, started else { return }
        mailbox.beginDrain()
        let (now, clock) = (WallClock.nowMs(), MonotonicClock.nowMs())
        var returns = CreditReturns()
        taking: while mailbox.take(
            into: &batch, messages: channel.isWritable ? window.room : 0,
            takeStream: downloadResumes.count < Limits.maxDownloadsInProgress)
        {
            while let envelope = batch.popFirst() {
                // A durable message its store refused: its sender was told, and nobody gets it.
                if envelope.commitState == .refused { continue }
                guard envelope.isControl || canWrite(envelope) else {
                    batch.prepend(envelope)
                    mailbox.putBack(&batch)
                    break taking
                }
                returns.add(envelope.credit)
                deliver(envelope, now: now, clock: clock)
                // A flush inside a delivery can find the connection gone: channelClosed took the rest.
                guard state != .closed else { return returns.flush() }
            }
        }
        returns.flush()
        while channel.isWritable, let event = mailbox.nextEvent() {
            write(.contextEvent(event))
        }
        sendBodyChunks()
        // A watch that fell behind ends after the events it was offered before.
        for (watch, after) in mailbox.takeLagged() {
            fail(watch, BusError(.overloaded, "watch fell behind after \(after)"))
        }
        load.inFlight = window.count
        flush()
        if state == .draining, window.count == 0, mailbox.messageCount == 0 { channel.close(promise: nil) }
    }

    /// Whether a delivery taken for this drain can still be written: the socket may have filled
    /// since, a stream needs a free download, and a durable message waits for its commit (what is
    /// behind it waits too: its store's completion wakes the drain).
    private func canWrite(_ envelope: Envelope) -> Bool {
        channel.isWritable && window.hasRoom
            && (!envelope.isStream || downloadResumes.count < Limits.maxDownloadsInProgress)
            && envelope.commitState != .pending
    }

    /// - Parameters: now: wall-clock time, for deadlines; clock: monotonic time, for the ack timeout.
    private func deliver(_ envelope: Envelope, now: UInt64, clock: UInt64) {
        switch envelope {
        case .message(let message):
            if let deadline = message.deadline, deadline <= now {
                audit("message.expired", ["from": message.from])
                if message.storedID != 0 {
                    supervisor.deadLetter(envelope, to: identity.key, reason: .deadlineExceeded)
                    if envelope.isFromBacklog { backlogReleased() }
                }
                return
            }
            let attempt = message.attempts + 1
            let id = window.send(envelope, attempt: attempt, now: clock)
            write(
                Deliver(
                    deliveryID: id, kind: message.kind, from: message.from, subject: message.subject,
                    correlationID: message.correlationID, deadline: message.deadline,
                    attempt: attempt, payload: message.payload,
                    messageID: deliversMessageIDs ? message.storedID : nil))
        case .stream(let stream):
            let id = window.send(envelope, attempt: stream.attempts + 1, now: clock)
            startDownload(stream, deliveryID: id)
        case .response(let local, let from, let status, let payload):
            complete(local: local, from: from, status: status, payload: payload)
        case .requestFailed(let local, let error):
            failRequest(local: local, error)
        }
    }

    func handleAck(_ ack: Ack) {
        var stored: [(id: UInt64, fromBacklog: Bool)] = []  // allocates only when a stored message was acknowledged
        let acked = window.ack(ack.deliveryID, cumulative: ack.cumulative) { envelope in
            if envelope.storedID != 0 { stored.append((envelope.storedID, envelope.isFromBacklog)) }
        }
        guard acked > 0 else { return }
        for (id, fromBacklog) in stored {
            supervisor.store?.settle(id, attempts: 0, deadLetterReason: nil)
            if fromBacklog { backlogReleased() }
        }
        drain()
    }

    func handleNack(_ nack: Ack) {
        guard let entry = window.remove(nack.deliveryID) else { return }
        retryOrDeadLetter(entry.item, attempts: entry.attempt, reason: .rejected)
        drain()
    }

    /// Puts a delivery back for another attempt, or dead-letters it after the last one.
    func retryOrDeadLetter(_ envelope: Envelope, attempts: UInt16, reason: ErrorCode) {
        let envelope = envelope.with(attempts: attempts)
        if attempts < configuration.maxDeliveryAttempts, requeue([envelope]) { return }
        if case .message(let message) = envelope, message.kind == .request {
            failRequester(of: message, BusError(.unavailable, "\(identity.agentID) did not acknowledge"))
        }
        supervisor.deadLetter(envelope, to: identity.key, reason: reason)
        if envelope.isFromBacklog { backlogReleased() }
    }
}
