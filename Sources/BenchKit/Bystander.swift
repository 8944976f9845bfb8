import NIOCore

/// A connection that only holds its place (idle agents, connect storms), saying it is alive as
/// often as the server asked.
final class Bystander: Behaviour {
    private var ticker: RepeatedTask?

    func attached(_ outbox: any Outbox) {
        guard let interval = outbox.keepAliveInterval else { return }
        // The ticker holds the connection until the connection closes and cancels it.
        let bound = NIOLoopBound(outbox, eventLoop: outbox.eventLoop)
        ticker = outbox.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            bound.value.keepAlive()
            bound.value.flush()
        }
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        if case .closed = event { ticker?.cancel() }
    }
}
