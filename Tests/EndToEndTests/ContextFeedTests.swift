import Bus
import NIOCore
import Testing

@testable import Gateway

/// The bounded queue behind an admin API event stream, as a value (no sockets) and behind its watcher.
@Suite struct ContextFeedTests {
    @Test func eventsComeInOrderThenTheEndingThenNothing() {
        var feed = ContextFeed()
        let accepted = [feed.offer(Self.event(1)), feed.offer(Self.event(2))]
        feed.lagged(after: 2)
        let afterTheEnd = feed.offer(Self.event(3))
        let taken = Self.versions(&feed)
        #expect(accepted == [true, true] && !afterTheEnd, "an ended feed takes nothing")
        #expect(taken == ["1", "2", "end lagged 2"])
        #expect(feed.isFinished)
    }

    @Test func anEventThatDoesNotFitIsRefused() {
        var feed = ContextFeed()
        let fitting = (1...UInt64(ContextFeed.maxEvents)).filter { feed.offer(Self.event($0)) }.count
        let oneMore = feed.offer(Self.event(UInt64(ContextFeed.maxEvents) + 1))
        #expect(fitting == ContextFeed.maxEvents && !oneMore)
        var large = ContextFeed()
        // The first event is taken however large; the next one would pass the byte bound.
        let first = large.offer(Self.event(1, payload: ContextFeed.maxBytes))
        let second = large.offer(Self.event(2))
        _ = large.take()
        let again = large.offer(Self.event(2))
        #expect(first && !second)
        #expect(again, "room again once the writer took it")
    }

    @Test func aHeartbeatComesOnlyWhenNothingElseIsWritten() {
        var feed = ContextFeed()
        feed.heartbeat()
        _ = feed.offer(Self.event(1))
        let busy = Self.versions(&feed)
        feed.heartbeat()
        let idle = Self.versions(&feed)
        #expect(busy == ["1"], "an event written stands for the heartbeat")
        #expect(idle == ["heartbeat"])
    }

    @Test func aShutdownWritesWhatWaitsAndAGoneReaderDropsIt() {
        var closing = ContextFeed()
        _ = closing.offer(Self.event(1))
        closing.end(.shuttingDown)
        closing.end(.lagged(after: 1))
        let closed = Self.versions(&closing)
        #expect(closed == ["1", "end shuttingDown"], "only the first ending counts")
        var gone = ContextFeed()
        _ = gone.offer(Self.event(1))
        gone.end(.gone)
        let dropped = Self.versions(&gone)
        #expect(dropped == ["end gone"])
    }

    @Test func theWatcherWakesItsWriterAndEndsWhenTheWriterIsCancelled() async {
        let watcher = ContextStreamWatcher()
        async let first = watcher.next()
        #expect(watcher.offer(Self.event(1)))
        guard case .event(let event)? = await first else {
            Issue.record("no event")
            return
        }
        #expect(event.head.version == 1)
        let waiting = Task { await watcher.next() }
        waiting.cancel()
        guard case .end(.gone)? = await waiting.value else {
            Issue.record("a cancelled writer is not told the stream ended")
            return
        }
        #expect(await watcher.next() == nil)
        #expect(!watcher.offer(Self.event(2)))
    }

    /// An event of version `version` of context `doc` whose payload has `payload` bytes.
    static func event(_ version: UInt64, payload: Int = 0) -> ContextEvent {
        let head = ContextHead(
            id: "doc", owner: "alice", attributes: ContextAttributes(contentType: .json), version: version,
            revision: version, checksum: [UInt8](repeating: 0, count: 32), size: UInt64(payload), createdMs: 1,
            updatedMs: 1, updatedBy: "alice", expiresMs: 0)
        return ContextEvent(
            watch: 1, kind: .updated, head: head, payloadKind: .body,
            payload: ByteBuffer(repeating: UInt8(ascii: " "), count: payload))
    }

    /// What the feed gives until it has nothing: event versions, `heartbeat`, `end <why>`.
    static func versions(_ feed: inout ContextFeed) -> [String] {
        var taken: [String] = []
        while let item = feed.take() {
            switch item {
            case .event(let event): taken.append("\(event.head.version)")
            case .heartbeat: taken.append("heartbeat")
            case .end(.lagged(let after)): taken.append("end lagged \(after)")
            case .end(let ending): taken.append("end \(ending)")
            }
        }
        return taken
    }
}
