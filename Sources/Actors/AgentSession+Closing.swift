public import Bus
import NIOCore
import Synchronization

/// How a session ends: the connection closing (what it held goes back, see ``channelClosed()``),
/// GOAWAY from the bus, a takeover, and the drain at shutdown (docs/protocol.md 5.10).
extension AgentSession {
    /// The connection is gone: give back what the session held so nothing is lost or leaked.
    ///
    /// Unacknowledged deliveries wait for the agent's next session; requests this agent was
    /// answering fail at their requesters with `unavailable`; uploads are parked for resume;
    /// its own pending requests and subscriptions go.
    public func channelClosed() {
        guard state != .closed else { return }
        state = .closed
        drainingFlag.store(true, ordering: .relaxed)
        ticker?.cancel()
        lastRoute = nil  // two sessions that sent to each other would keep each other alive
        sendWindow?.close()
        supervisor.contexts.unwatchAll(self)
        for pending in requests.removeAll() {
            pending.timer?.cancel()
            forgetIdempotencyKey(pending.idempotencyKey)
        }
        for pending in fanouts.removeAll() { pending.timer?.cancel() }
        let now = MonotonicClock.nowMs()
        // An upload still waiting for its resume parks with that wait as its chain; held frames go.
        for upload in uploads.values.sorted(by: { $0.spool.sequence < $1.spool.sequence }) {
            supervisor.streams.park(upload.spool, chain: upload.chain, now: now)
        }
        uploads.removeAll()
        stagedBodies.removeAll()
        bodyStreams.removeAll()
        var orphans: [Envelope] = []
        var returns = CreditReturns()
        // What a drain took and had not written yet (the connection can close inside a drain's
        // flush) comes first: it was ahead of the mailbox.
        let taken = Array(batch)
        batch.removeAll()
        let queued = (taken + mailbox.close()).map { envelope in
            returns.add(envelope.credit)
            return envelope.with(attempts: envelope.attempts)
        }
        returns.flush()
        let held = window.removeAll().map { $0.item.with(attempts: $0.attempt) } + queued
        var released: [UInt64] = []
        for envelope in held {
            switch envelope {
            case .message(let message) where message.kind == .request:
                failRequester(of: message, BusError(.unavailable, "\(identity.agentID) disconnected"))
            case .message(let message) where message.storedID != 0:
                // Stored: back in the agent's backlog, which its next session reads.
                if message.attempts >= configuration.maxDeliveryAttempts {
                    supervisor.deadLetter(envelope, to: identity.key, reason: .unavailable)
                } else {
                    released.append(message.storedID)
                }
            case .message, .stream:
                if envelope.attempts >= configuration.maxDeliveryAttempts {
                    // Its receiver keeps dropping the connection while holding it: give up, as after NACKs.
                    supervisor.deadLetter(envelope, to: identity.key, reason: .unavailable)
                } else {
                    orphans.append(envelope)
                }
            case .response, .requestFailed: break
            }
        }
        supervisor.retire(self, patterns: Array(patterns.values), orphans: orphans)
        if !released.isEmpty { supervisor.release(released, of: identity.key) }
    }

    /// Writes GOAWAY and closes the connection; before WELCOME (a cluster node waiting for its
    /// directory), ERROR with ref 0 instead, as the handshake answers.
    public func close(_ goAway: GoAway) {
        guard state != .closed else { return }
        write(started ? .goAway(goAway) : .error(ErrorFrame(ref: 0, error: BusError(goAway.code, goAway.message))))
        flush()
        channel.close(promise: nil)
    }

    /// Closes the session from any thread (another agent took over, or an operator asked). It
    /// counts as draining at once, so no sender's route cache (``lastRoute``) picks it meanwhile.
    public nonisolated func closeSoon(_ goAway: GoAway) {
        drainingFlag.store(true, ordering: .relaxed)
        channel.eventLoop.execute { self.assumeIsolated { $0.close(goAway) } }
    }

    /// Shutdown: GOAWAY `shutting_down`, refuse new work, close once every delivery is acknowledged.
    nonisolated func drainSoon() {
        channel.eventLoop.execute {
            self.assumeIsolated { session in
                guard session.state == .active else { return }
                guard session.started else {
                    return session.close(GoAway(code: .shuttingDown, message: "the server is shutting down"))
                }
                session.state = .draining
                session.drainingFlag.store(true, ordering: .relaxed)
                // The backlog is read no more: what waits for it in the mailbox goes now.
                _ = session.mailbox.yieldBacklog()
                session.write(.goAway(GoAway(code: .shuttingDown, message: "the server is shutting down")))
                session.drain()
            }
        }
    }
}
