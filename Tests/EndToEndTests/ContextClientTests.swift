import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Testing

/// The Swift client's contexts against a real bus: writes and reads between agents, versions,
/// patches, listings, history, lineage, and watches that resume by themselves after a cut.
@Suite(.timeLimit(.minutes(1))) struct ContextClientTests {
    struct Plan: Codable, Equatable {
        var title: String
        var steps: [String]
    }

    @Test func aContextSharedWithTheTenantIsReadByAnotherAgent() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let plan = Plan(title: "launch", steps: ["build", "ship"])
            let options = ContextOptions(scope: .tenant, metadata: ["team": "core"], kind: "plan")
            let head = try await alice.share("plans.q3", json: plan, options: options)
            #expect(head.version == 1 && head.owner == "alice" && head.attributes.contentType == .json)
            let read = try await bob.get("plans.q3")
            #expect(try read.decode(Plan.self) == plan)
            #expect(read.version == 1 && read.head.owner == "alice" && read.head.updatedBy == "alice")
            #expect(read.head.attributes.scope == .tenant && read.head.attributes.kind == "plan")
            #expect(read.head.attributes.metadata == [MetadataEntry(key: "team", value: "core")])
            await alice.close()
            await bob.close()
        }
    }

    @Test func anUpdateFromAStaleVersionIsRefusedWithTheCurrentOne() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            try await alice.share("notes", "first", options: ContextOptions(scope: .tenant, writers: ["bob"]))
            let seen = try await alice.get("notes").version
            #expect(try await bob.get("notes").version == seen)
            try await bob.update("notes", "bob's", expectedVersion: seen)
            let error = await expectBusError(.versionConflict) {
                try await alice.update("notes", "alice's", expectedVersion: seen)
            }
            #expect(error?.currentVersion == 2)
            #expect(try await alice.get("notes").text == "bob's", "the refused write changed nothing")
            await alice.close()
            await bob.close()
        }
    }

    @Test func aMergePatchChangesOnlyTheMembersItNames() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            try await alice.share("plan", json: Plan(title: "draft", steps: ["a"]))
            let head = try await alice.patch("plan", .merge(encoding: ["title": "final"]), expectedVersion: 1)
            #expect(head.version == 2)
            #expect(try await alice.get("plan").decode(Plan.self) == Plan(title: "final", steps: ["a"]))
            await alice.close()
        }
    }

    @Test func aJSONPatchAppliesAllItsOperationsOrNone() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            try await alice.share("plan", json: Plan(title: "draft", steps: ["a"]))
            let operations =
                #"[{"op":"add","path":"/steps/-","value":"b"},"# + #"{"op":"replace","path":"/title","value":"final"}]"#
            try await alice.patch("plan", .json(text: operations))
            #expect(try await alice.get("plan").decode(Plan.self) == Plan(title: "final", steps: ["a", "b"]))
            let failing = #"[{"op":"remove","path":"/steps/0"},{"op":"test","path":"/title","value":"draft"}]"#
            await expectBusError(.patchFailed) { try await alice.patch("plan", .json(text: failing)) }
            #expect(try await alice.get("plan").version == 2, "a failed patch changes nothing")
            await alice.close()
        }
    }

    @Test func aGetIfNewerThanTheLatestVersionReturnsNothing() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            try await alice.share("status", "green")
            #expect(try await alice.get("status", ifNewerThan: 1) == nil)
            try await alice.update("status", "amber")
            #expect(try await alice.get("status", ifNewerThan: 1)?.text == "amber")
            await alice.close()
        }
    }

    @Test func aWatchSeesCreationUpdateAndDeletionInOrder() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            var events = try await bob.watch("tasks.1").makeAsyncIterator()
            try await alice.share("tasks.1", "todo", options: ContextOptions(scope: .tenant))
            try await alice.update("tasks.1", "doing")
            try await alice.delete("tasks.1")
            var seen: [ContextWatchEvent] = []
            for _ in 1...3 { seen.append(try await events.take()) }
            #expect(seen.map(\.kind) == [.created, .updated, .deleted])
            #expect(seen.map(\.version) == [1, 2, 3])
            #expect(seen.map { $0.body.map(String.init(buffer:)) } == ["todo", "doing", nil])
            await alice.close()
            await bob.close()
        }
    }

    /// One id (positions are versions) and a pattern (positions are revisions): changes made while
    /// the watcher is away arrive once the client is back, then live ones, each once.
    @Test(arguments: ["jobs.7", "jobs.*"])
    func aWatchResumesByItselfAfterACutWithNoGapAndNoRepeat(target: String) async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            // A slow first reconnect: the writes made after the cut land while bob is away.
            let bob = try await bus.client("bob") { $0.initialBackoffMs = 300 }
            try await alice.share("jobs.7", "1", options: ContextOptions(scope: .tenant))
            var events = try await bob.watch(target).makeAsyncIterator()
            var versions: [UInt64] = []
            for n in 2...4 { try await alice.update("jobs.7", "\(n)") }
            for _ in 2...4 { versions.append(try await events.take().version) }

            bob.dropConnection()
            await bus.audit.first("session.closed", agent: "bob")
            for n in 5...7 { try await alice.update("jobs.7", "\(n)") }
            // Only a watch set up again on bob's next session can bring these.
            for _ in 5...7 { versions.append(try await events.take().version) }
            for n in 8...9 { try await alice.update("jobs.7", "\(n)") }
            for _ in 8...9 { versions.append(try await events.take().version) }
            #expect(versions == Array(2...9))
            await alice.close()
            await bob.close()
        }
    }

    @Test func aWatchThatCannotResumeWhereItStoppedThrowsCompacted() async throws {
        // One version kept: the single write below compacts what bob would resume after.
        try await TestBus.with({ $0.supervisor.contextHistory = 1 }) { bus in
            let alice = try await bus.client("alice")
            // Away for 5 s: the one write takes milliseconds, even with every suite running.
            let bob = try await bus.client("bob") { $0.initialBackoffMs = 5_000 }
            try await alice.share("counter", "1", options: ContextOptions(scope: .tenant))
            var events = try await bob.watch("counter").makeAsyncIterator()
            try await alice.update("counter", "2")
            #expect(try await events.take().version == 2)

            bob.dropConnection()
            await bus.audit.first("session.closed", agent: "bob")
            try await alice.update("counter", "3")
            let error = await expectBusError(.compacted) { _ = try await events.next() }
            #expect(error?.oldestHeld == 3, "only version 3 is kept")
            await alice.close()
            await bob.close()
        }
    }

    @Test func largeBodiesAreUploadedAndReadAsStreams() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            let bob = try await bus.client("bob")
            let body = ByteBuffer(bytes: (0..<(2 << 20) + 5).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            let head = try await alice.share("big", body, options: ContextOptions(scope: .tenant))
            #expect(head.size == UInt64(body.readableBytes) && head.version == 1)
            #expect(try await bob.get("big").body == body)
            let second = try await alice.update("big", ByteBuffer(bytes: Array(body.readableBytesView.reversed())))
            #expect(try await bob.get("big", ifNewerThan: 1)?.head == second)
            #expect(try await bob.get("big", version: 1).body == body)
            await alice.close()
            await bob.close()
        }
    }

    @Test func listFindsTheContextsWhoseIdsMatchAPatternAcrossPages() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            for id in ["plans.a", "plans.b", "plans.c.d", "notes.a"] { try await alice.share(id, "{}") }
            #expect(try await alice.list(pattern: "plans.*", pageSize: 1).map(\.id) == ["plans.a", "plans.b"])
            #expect(try await alice.list(pattern: "plans.>").map(\.id) == ["plans.a", "plans.b", "plans.c.d"])
            await alice.close()
        }
    }

    @Test func historyListsTheKeptVersionsNewestFirst() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            try await alice.share("draft", "one")
            try await alice.update("draft", "two")
            try await alice.update("draft", "three")
            #expect(try await alice.history("draft").map(\.version) == [3, 2, 1])
            #expect(try await alice.history("draft", limit: 2).map(\.version) == [3, 2])
            #expect(try await alice.get("draft", version: 1).text == "one")
            await alice.close()
        }
    }

    @Test func lineageFollowsParentLinksBothWays() async throws {
        try await TestBus.with { bus in
            let alice = try await bus.client("alice")
            try await alice.share("raw", "data")
            let fromRaw = ContextOptions(parents: [ContextParent(id: "raw", version: 1)])
            try await alice.share("summary", "short", options: fromRaw)
            let fromSummary = ContextOptions(parents: [ContextParent(id: "summary", version: 1)], source: "req-42")
            try await alice.share("report", "final", options: fromSummary)
            #expect(try await alice.lineage("report").map(\.id) == ["summary", "raw"])
            #expect(try await alice.lineage("raw", .descendants).map(\.id) == ["summary", "report"])
            #expect(try await alice.lineage("raw", .descendants, depth: 1).map(\.id) == ["summary"])
            await alice.close()
        }
    }
}

extension ContextWatchEvents.AsyncIterator {
    /// The next event; fails the test if the watch ended.
    mutating func take(sourceLocation: SourceLocation = #_sourceLocation) async throws -> ContextWatchEvent {
        try #require(try await next(), "the watch ended", sourceLocation: sourceLocation)
    }
}
