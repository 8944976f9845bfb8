/// The events of one watch (see ``ACBClient/watch(_:from:paths:)``), for one consumer: iterate it
/// from a single task.
public struct ContextWatchEvents: AsyncSequence, Sendable {
    public typealias Element = ContextWatchEvent

    let handle: WatchHandle
    let base: AsyncThrowingStream<ContextWatchHub.Item, any Error>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let handle: WatchHandle
        var base: AsyncThrowingStream<ContextWatchHub.Item, any Error>.AsyncIterator

        public mutating func next() async throws -> ContextWatchEvent? {
            while let item = try await base.next() {
                switch item {
                case .event(let event): return event
                case .resume: await handle.client.resumeWatch(handle.id)
                }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(handle: handle, base: base.makeAsyncIterator())
    }

    /// Ends the watch: the bus stops it, and iteration ends after the events already received.
    public func cancel() async {
        guard let running = handle.client.contextWatches.cancel(handle.id) else { return }
        await handle.client.unwatch(running)
    }
}

/// Cancels its watch when the last sequence or iterator holding it goes.
final class WatchHandle: Sendable {
    let client: ACBClient
    let id: Int

    init(client: ACBClient, id: Int) {
        self.client = client
        self.id = id
    }

    deinit { client.watchCancelled(id) }
}
