import Bus
import NIOCore
import Testing

@Suite struct IdempotencyWindowTests {
    @Test func aRetryWithinTheWindowGetsTheFirstResult() {
        var window = IdempotencyWindow<Int>(windowMs: 1000, capacity: 10)
        #expect(window.begin("k", now: 0) == .new)
        #expect(window.begin("k", now: 1) == .pending)
        window.complete("k", with: 42, now: 2)
        #expect(window.begin("k", now: 999) == .done(42))
    }

    @Test func keysAreForgottenAfterTheWindow() {
        var window = IdempotencyWindow<Int>(windowMs: 1000, capacity: 10)
        _ = window.begin("k", now: 0)
        window.complete("k", with: 1, now: 0)
        #expect(window.begin("k", now: 1000) == .new)
    }

    @Test func theOldestKeyIsForgottenAtCapacity() {
        var window = IdempotencyWindow<Int>(windowMs: 1000, capacity: 2)
        for key in ["a", "b", "c"] { _ = window.begin(key, now: 0) }
        #expect(window.count == 2)
        #expect(window.begin("a", now: 1) == .new)
    }

    @Test func theOldestResultsAreForgottenWhenTheirCostPassesTheBudget() {
        var window = IdempotencyWindow<Int>(windowMs: 1000, capacity: 10, costBudget: 100)
        for (key, cost) in [("a", 60), ("b", 30), ("c", 20)] {
            _ = window.begin(key, now: 0)
            window.complete(key, with: cost, cost: cost, now: 0)
        }
        #expect(window.totalCost == 50)
        #expect(window.begin("a", now: 1) == .new)
        #expect(window.begin("b", now: 1) == .done(30))
    }

    @Test func aCancelledKeyRunsAgain() {
        var window = IdempotencyWindow<Int>(windowMs: 1000, capacity: 2)
        _ = window.begin("a", now: 0)
        window.cancel("a")
        #expect(window.begin("a", now: 1) == .new)
    }
}

@Suite struct CorrelationTableTests {
    @Test func requestsAreBoundedAndMatchedByLocalID() throws {
        var table = CorrelationTable<String>(capacity: 2)
        let first = try table.insert("one")
        let second = try table.insert("two")
        #expect(first != second)
        #expect(throws: BusError(.overloaded, "2 requests already pending", retryAfterMs: 100)) {
            try table.insert("three")
        }
        #expect(table.remove(first) == "one")
        #expect(table.remove(first) == nil)
        #expect(table.removeAll() == ["two"])
    }

    @Test func wireIDsCarryTheSessionAndTheLocalID() {
        let id = CorrelationTable<Int>.wireID(session: 0xDEAD, local: 0xBEEF)
        #expect(CorrelationTable<Int>.split(id) == (0xDEAD, 0xBEEF))
    }
}

@Suite struct DeliveryWindowTests {
    @Test func idsIncreaseAndCumulativeAcksReleaseEverythingUpToTheID() {
        var window = DeliveryWindow<String>(capacity: 3)
        let ids = ["a", "b", "c"].map { window.send($0, attempt: 1, now: 0) }
        #expect(ids == [1, 2, 3])
        #expect(!window.hasRoom)
        #expect(window.ack(2, cumulative: true) == 2)
        #expect(window.count == 1)
        #expect(window.send("d", attempt: 1, now: 0) == 4)
        #expect(window.removeAll().map(\.item) == ["c", "d"])
    }

    @Test func singleAcksMayComeOutOfOrderAndUnknownIDsAreIgnored() {
        var window = DeliveryWindow<String>(capacity: 3)
        for item in ["a", "b", "c"] { _ = window.send(item, attempt: 1, now: 0) }
        #expect(window.ack(2, cumulative: false) == 1)
        #expect(window.ack(2, cumulative: false) == 0)
        #expect(window.ack(99, cumulative: true) == 0)
        #expect(window.ack(1, cumulative: false) == 1)
        #expect(window.count == 1)
        #expect(window.nextID == 4)
        #expect(window.removeAll().map(\.item) == ["c"])
    }

    @Test func expiryReturnsTheOldestUnackedDeliveries() {
        var window = DeliveryWindow<String>(capacity: 5)
        _ = window.send("old", attempt: 1, now: 0)
        _ = window.send("new", attempt: 2, now: 100)
        let expired = window.expire(now: 150, timeout: 100)
        #expect(expired.map(\.item) == ["old"])
        #expect(expired.first?.attempt == 1)
        #expect(window.count == 1)
        #expect(window.removeAll().map(\.item) == ["new"])
        #expect(window.count == 0)
    }

    @Test func touchingADeliveryRestartsItsClock() {
        var window = DeliveryWindow<String>(capacity: 5)
        let id = window.send("stream", attempt: 1, now: 0)
        window.touch(id, now: 90)
        #expect(window.expire(now: 150, timeout: 100).isEmpty)
        #expect(window.remove(id)?.item == "stream")
    }
}

@Suite struct StreamAssemblyTests {
    @Test func chunksAreAcceptedInOrderWithExactSizes() throws {
        var assembly = try StreamAssembly(totalSize: 25, chunkSize: 10, maxChunkSize: 10, maxTotalSize: 100)
        #expect(assembly.chunkCount == 3)
        #expect(try assembly.receive(index: 0, length: 10) == .store(offset: 0))
        #expect(throws: BusError.self) { try assembly.receive(index: 2, length: 5) }
        #expect(try assembly.receive(index: 1, length: 10) == .store(offset: 10))
        #expect(throws: BusError.self) { try assembly.receive(index: 2, length: 10) }
        #expect(try assembly.receive(index: 2, length: 5) == .store(offset: 20))
        for length in [10, 10, 5] { assembly.stored(length: length) }
        #expect(assembly.isComplete)
        #expect(assembly.storedBytes == 25)
    }

    @Test func resumeRestartsAfterTheLastStoredChunkAndDuplicatesAreDropped() throws {
        var assembly = try StreamAssembly(totalSize: 30, chunkSize: 10, maxChunkSize: 10, maxTotalSize: 100)
        _ = try assembly.receive(index: 0, length: 10)
        _ = try assembly.receive(index: 1, length: 10)
        assembly.stored(length: 10)
        assembly.rewindToStored()
        #expect(assembly.nextIndex == 1)
        #expect(try assembly.receive(index: 0, length: 10) == .duplicate)
        #expect(try assembly.receive(index: 1, length: 10) == .store(offset: 10))
    }

    @Test func anUploadHandedOverStartsAfterTheChunksItHad() throws {
        var assembly = try StreamAssembly(totalSize: 25, chunkSize: 10, maxChunkSize: 10, maxTotalSize: 100)
        try assembly.restore(storedChunks: 2)
        #expect(assembly.storedIndex == 2 && assembly.nextIndex == 2 && assembly.storedBytes == 20)
        #expect(try assembly.receive(index: 1, length: 10) == .duplicate)
        #expect(try assembly.receive(index: 2, length: 5) == .store(offset: 20))
        try assembly.restore(storedChunks: 3)
        #expect(assembly.isComplete && assembly.storedBytes == 25)
        #expect(throws: BusError.self) { try assembly.restore(storedChunks: 4) }
    }

    @Test func aSenderThatOutrunsStorageIsRefused() throws {
        var assembly = try StreamAssembly(totalSize: 1000, chunkSize: 1, maxChunkSize: 1, maxTotalSize: 1000)
        for index in 0..<Limits.maxChunksInFlight { _ = try assembly.receive(index: index, length: 1) }
        #expect(throws: BusError.self) { try assembly.receive(index: Limits.maxChunksInFlight, length: 1) }
        assembly.stored(length: 1)
        #expect(try assembly.receive(index: Limits.maxChunksInFlight, length: 1) == .store(offset: 16))
    }

    @Test func storingMoreThanWasReceivedIsIgnored() throws {
        var assembly = try StreamAssembly(totalSize: 10, chunkSize: 5, maxChunkSize: 5, maxTotalSize: 10)
        assembly.stored(length: 5)
        #expect(assembly.storedIndex == 0)
    }

    @Test(arguments: [(0, 10), (10, 0), (10, 11), (101, 10)] as [(UInt64, UInt32)])
    func badGeometryIsRefused(total: UInt64, chunk: UInt32) {
        #expect(throws: BusError.self) {
            try StreamAssembly(totalSize: total, chunkSize: chunk, maxChunkSize: 10, maxTotalSize: 100)
        }
    }
}

@Suite struct AckTrackerTests {
    @Test func contiguousIDsCollapseIntoOneCumulativeAck() {
        var tracker = AckTracker()
        for id in 1...5 as ClosedRange<UInt64> { tracker.done(id) }
        #expect(tracker.takeAcks() == [Ack(deliveryID: 5, cumulative: true)])
        #expect(!tracker.hasPending)
    }

    @Test func outOfOrderIDsAreAckedSinglyUntilTheFloorCatchesUp() {
        var tracker = AckTracker()
        tracker.done(2)
        tracker.done(4)
        #expect(tracker.takeAcks() == [Ack(deliveryID: 2), Ack(deliveryID: 4)])
        tracker.done(1)
        #expect(tracker.takeAcks() == [Ack(deliveryID: 2, cumulative: true)])
        tracker.done(3)
        #expect(tracker.takeAcks() == [Ack(deliveryID: 4, cumulative: true)])
    }
}

@Suite struct RoleTests {
    @Test func observersMayOnlyDiscoverAndAgentsOnlyWhatTheirRoleSays() {
        #expect(Role.observer.allows(.discover))
        #expect(!Role.observer.allows(.send))
        #expect(Role.agentProducer.allows(.send) && !Role.agentProducer.allows(.subscribe))
        #expect(Role.agentConsumer.allows(.subscribe) && !Role.agentConsumer.allows(.publish))
        #expect(
            FrameType.allCases.filter { Role.admin.allows($0) }
                == FrameType.allCases.filter { Role.agentFull.allows($0) })
        #expect(Role.parse(["no-such-role", "observer"]) == [.observer])
    }

    @Test func noRoleMaySendServerFrames() {
        for role in Role.allCases {
            for type in FrameType.allCases where !type.isSentByClients || type == .hello {
                #expect(!role.allows(type))
            }
        }
    }
}

@Suite struct IdentifierTests {
    @Test(arguments: ["", "a b", "a/b", "tab\t", String(repeating: "x", count: 129), "é"])
    func invalidIdentifiers(_ value: String) {
        #expect(throws: BusError.self) { try Identifier.validate(value, field: "id") }
    }

    @Test(arguments: ["alice", "agent-1.eu:prod@x", String(repeating: "x", count: 128)])
    func validIdentifiers(_ value: String) throws {
        try Identifier.validate(value, field: "id")
    }
}

@Suite struct TokenBucketTests {
    @Test func aBurstThenTheRateThenAHintOfWhenToRetry() {
        var bucket = TokenBucket(perSecond: 1_000, burst: 10, nowMs: 0)
        #expect(bucket.take(upTo: 64, nowMs: 0) == (10, nil))
        let empty = bucket.take(upTo: 64, nowMs: 0)
        #expect(empty.granted == 0 && empty.retryAfterMs == 1)
        #expect(bucket.take(upTo: 64, nowMs: 5).granted == 5)
        #expect(bucket.take(nowMs: 5) == 1)
        #expect(!bucket.isFull(nowMs: 14) && bucket.isFull(nowMs: 15))
    }
}

@Suite struct BacklogGateTests {
    @Test func whileReadingDirectMessagesAreStoredAndHoldTheGateUntilTheyAreRead() {
        var gate = BacklogGate(reading: true)
        let first = gate.route(mustStore: false)
        #expect(first == .store && gate.holds == 1)
        // The read asked for before that store landed comes back complete: the store is not read yet.
        let early = gate.read(complete: true)
        let meanwhile = gate.route(mustStore: false)
        #expect(!early && gate.phase == .closing)
        #expect(meanwhile == .park, "later sends wait in the mailbox, not in the store")
        gate.release()
        let partial = gate.read(complete: false)
        let last = gate.read(complete: true)
        let after = gate.route(mustStore: false)
        #expect(!partial, "a read that is not complete opens nothing")
        #expect(last && gate.phase == .open && after == .deliver)
    }

    @Test func aMessageStoredForTheAgentClosesAnOpenGateUntilItIsRead() {
        var gate = BacklogGate(reading: false)
        let before = gate.route(mustStore: false)
        gate.stored()
        let meanwhile = gate.route(mustStore: false)
        gate.release()
        let opened = gate.read(complete: true)
        #expect(before == .deliver && meanwhile == .park && opened)
    }

    @Test func aSenderWithAStoreInFlightElsewhereStoresEvenThroughAnOpenGate() {
        var gate = BacklogGate(reading: false)
        let forced = gate.route(mustStore: true)
        #expect(forced == .store && gate.holds == 1 && gate.phase == .closing)
        let other = gate.route(mustStore: false)
        gate.release()
        let opened = gate.read(complete: true)
        #expect(other == .park && opened)
    }

    @Test func anUnreadableBacklogOpensTheGateAndOrderYields() {
        var gate = BacklogGate(reading: true)
        _ = gate.route(mustStore: false)
        let opened = gate.yield()
        let after = gate.route(mustStore: false)
        let again = gate.yield()
        #expect(opened && after == .deliver && !again)
        gate.release()
        let read = gate.read(complete: true)
        #expect(!read && gate.phase == .open, "an open gate stays open")
        gate.stored()
        #expect(gate.phase == .closing, "the next stored message closes it again")
    }
}
