import Actors
import Bus
import Synchronization

/// The ``ContextWatcher`` of one event stream of the admin API: the ``ContextService`` offers it
/// the watch's events from any thread (under its own lock: nothing here calls back into it), and
/// the response's writer takes them in order with ``next()``, waiting while there are none. What
/// waits is a bounded ``ContextFeed``; when an event does not fit, ``offer(_:)`` says so and the
/// service ends the watch.
final class ContextStreamWatcher: ContextWatcher {
    /// The `ref` of the one watch of each watcher.
    static let ref: UInt64 = 1
    /// How long a stream stays silent before a comment line is written: it keeps proxies from
    /// closing the connection, and a write to a client that left fails, which ends the watch.
    static let heartbeat = Duration.seconds(15)

    private struct State {
        var feed = ContextFeed()
        /// The writer, waiting for the next item.
        var waiter: CheckedContinuation<ContextFeed.Item?, Never>?

        /// The waiting writer and what to hand it, once there is something.
        mutating func ready() -> (CheckedContinuation<ContextFeed.Item?, Never>, ContextFeed.Item?)? {
            guard let waiter else { return nil }
            let item = feed.take()
            guard item != nil || feed.isFinished else { return nil }
            self.waiter = nil
            return (waiter, item)
        }
    }

    private let state = Mutex(State())

    func offer(_ event: ContextEvent) -> Bool {
        let (accepted, ready) = state.withLock { state in
            let accepted = state.feed.offer(event)
            return (accepted, state.ready())
        }
        if case let (waiter, item)? = ready { waiter.resume(returning: item) }
        return accepted
    }

    func lagged(watch ref: UInt64, after: UInt64) {
        change { $0.lagged(after: after) }
    }

    /// Ends the stream once what waits is written (``ContextFeed/end(_:)``).
    func end(_ ending: ContextFeed.Ending) {
        change { $0.end(ending) }
    }

    /// Asks for a comment line, if nothing else is written first.
    func heartbeat() {
        change { $0.heartbeat() }
    }

    /// The next item to write, waiting for one; nil once the stream has ended. One writer only.
    /// Cancelling the waiting task ends the stream (``ContextFeed/Ending/gone``).
    func next() async -> ContextFeed.Item? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: CheckedContinuation<ContextFeed.Item?, Never>) in
                let ready = state.withLock { state in
                    state.waiter = waiter
                    return state.ready()
                }
                if case let (waiter, item)? = ready { waiter.resume(returning: item) }
            }
        } onCancel: {
            end(.gone)
        }
    }

    private func change(_ body: (inout ContextFeed) -> Void) {
        let ready = state.withLock { state in
            body(&state.feed)
            return state.ready()
        }
        if case let (waiter, item)? = ready { waiter.resume(returning: item) }
    }
}
