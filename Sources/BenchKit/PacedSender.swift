import NIOCore

/// A behaviour that sends on its own, at its ``SendLoop/Pace``, once the harness starts it:
/// ``Requester``, ``ContextWriter``, ``ContextReader``.
///
/// The extension starts and stops it, decides when it sends (at once in a closed loop, every 200 µs
/// against the schedule in open loop) and says when it is done; the sender says what one send is,
/// counts it, and calls ``pump()`` when an answer comes back. Called on the connection's event loop only.
protocol PacedSender: Behaviour {
    /// Its pace and where it stands; only the extension changes it.
    var loop: SendLoop { get set }
    /// What it sent, and how the server answered.
    var counts: SendCounts { get }
    /// The latencies it timed, one per answer.
    var latency: LatencyRecorder { get }
    /// When the last answer arrived, in ``Stamp/now()`` nanoseconds.
    var lastArrival: UInt64 { get }
    /// Sends one, and adds it to `counts.sent`. `scheduled` is when the open loop's schedule had it
    /// due (``Stamp/now()`` nanoseconds); nil in a closed loop, where it is due now.
    func send(scheduled: UInt64?, on outbox: any Outbox)
}

extension PacedSender {
    func attached(_ outbox: any Outbox) { loop.outbox = outbox }

    /// Starts sending: a closed loop at once, an open loop on its first tick.
    func start() {
        guard let outbox = loop.outbox else { return }
        loop.start()
        if case .openLoop = loop.pace {
            let this = NIOLoopBound(self, eventLoop: outbox.eventLoop)
            // Every 200 µs: a send goes out at most that long after it falls due.
            loop.ticker = outbox.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .microseconds(200)) { _ in
                this.value.tick()
            }
        } else {
            pump()
            outbox.flush()
        }
    }

    /// Every send was made or skipped (count mode).
    var isDone: Bool { counts.sent + loop.skipped >= loop.limit }

    /// Open loop: sends that fell due while too many were unanswered, and were not made.
    var skipped: UInt64 { loop.skipped }

    /// Stops sending; returns what was sent.
    func stop() -> SendCounts {
        loop.stop()
        return counts
    }

    /// Closed loop: sends what the pace allows now, the next send or enough to fill the window. The
    /// connection flushes after the read batch that called it.
    func pump() {
        guard loop.isRunning, let outbox = loop.outbox else { return }
        switch loop.pace {
        case .closedLoop:
            if counts.sent < loop.limit { send(scheduled: nil, on: outbox) }
        case .window(let window):
            while counts.sent < loop.limit && counts.unanswered < UInt64(window) { send(scheduled: nil, on: outbox) }
        case .openLoop:
            return
        }
    }

    /// Open loop: sends every send due by now, each with the moment it was due.
    private func tick() {
        guard loop.isRunning, let outbox = loop.outbox else { return }
        let now = Stamp.now()
        while let due = loop.nextDue(by: now, counts) { send(scheduled: due, on: outbox) }
        outbox.flush()
    }
}
