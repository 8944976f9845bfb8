import Actors
import Bus
import Crypto
import Gateway
import NIOCore
import Testing

/// Contexts over the wire, on a bus without storage: each operation, each error (with nothing
/// changed), each scope, watches (order, resume, compaction, field level, a watcher that falls
/// behind), lineage and expiry.
@Suite(.timeLimit(.minutes(1))) struct ContextTests {
    @Test func versionsCompareAndSwapAndTombstones() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            let first = try await alice.put("plan.q3", #"{"goal":"ship"}"#)
            #expect(first.version == 1 && first.revision == 1 && first.owner == "alice" && first.updatedBy == "alice")
            #expect(first.checksum == sha256(#"{"goal":"ship"}"#) && first.size == 15 && first.state == .live)
            #expect(try await alice.body("plan.q3") == #"{"goal":"ship"}"#)
            #expect(try await alice.get("plan.q3", ifNewerThan: 1).get().status == .notModified)

            let second = try await alice.write(.update, "plan.q3", body: #"{"goal":"ship it"}"#, expected: 1).get()
            #expect(second.version == 2 && second.attributes.kind == "plan" && second.createdMs == first.createdMs)
            let stale = try await alice.write(.update, "plan.q3", body: "{}", expected: 1)
            #expect(stale.code == .versionConflict)
            if case .failure(let error) = stale { #expect(error.currentVersion == 2) }
            let exists = try await alice.write(.create, "plan.q3", body: "{}")
            if case .failure(let error) = exists {
                #expect(error.code == .versionConflict && error.currentVersion == 2)
            }
            #expect(try await alice.body("plan.q3") == #"{"goal":"ship it"}"#)
            #expect(try await alice.get("plan.q3", version: 1).get().body == ByteBuffer(string: #"{"goal":"ship"}"#))

            let deleted = try await alice.write(.delete, "plan.q3", expected: 2).get()
            #expect(deleted.version == 3 && deleted.state == .deleted && deleted.size == 0)
            #expect(try await alice.get("plan.q3").code == .unknownContext)
            #expect(try await alice.write(.update, "plan.q3", body: "{}").code == .unknownContext)
            // The id lives on: created again, its versions go on from the tombstone.
            let again = try await alice.write(.create, "plan.q3", body: "x").get()
            #expect(again.version == 4 && again.attributes.contentType == .bytes && again.attributes.scope == .private)
            await alice.close()
        }
    }

    @Test func patchesApplyOrChangeNothing() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            _ = try await alice.put("facts", #"{"a":{"b":1},"list":[1,2]}"#)
            let merged = try await alice.write(.mergePatch, "facts", body: #"{"a":{"b":null,"c":true},"d":"x"}"#).get()
            #expect(merged.version == 2)
            #expect(try await alice.body("facts") == #"{"a":{"c":true},"d":"x","list":[1,2]}"#)
            let patched = try await alice.write(
                .jsonPatch, "facts", body: #"[{"op":"add","path":"/list/-","value":3},{"op":"remove","path":"/d"}]"#,
                expected: 2)
            #expect(try patched.get().version == 3)
            #expect(try await alice.body("facts") == #"{"a":{"c":true},"list":[1,2,3]}"#)

            let failing = #"[{"op":"replace","path":"/list/0","value":9},{"op":"test","path":"/a/c","value":false}]"#
            #expect(try await alice.write(.jsonPatch, "facts", body: failing).code == .patchFailed)
            #expect(try await alice.write(.jsonPatch, "facts", body: #"{"op":"add"}"#).code == .invalidJSON)
            #expect(try await alice.write(.mergePatch, "facts", body: "{nope").code == .invalidJSON)
            #expect(
                try await alice.write(.jsonPatch, "facts", body: #"[{"op":"remove","path":"a"}]"#).code
                    == .invalidPointer)
            #expect(try await alice.get("facts").get().head.version == 3, "a refused patch changes nothing")
            _ = try await alice.write(.put, "blob", body: "bytes").get()
            #expect(try await alice.write(.mergePatch, "blob", body: "{}").code == .patchFailed, "bytes take no patch")
            #expect(try await alice.write(.jsonPatch, "missing", body: "[]").code == .unknownContext)
            await alice.close()
        }
    }

    @Test func badInputHasItsCode() async throws {
        try await TestBus.with({ $0.supervisor.limits.maxInlinePayload = 1_024 }) { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            let json = ContextAttributes(contentType: .json)
            #expect(try await alice.write(.put, "not an id", body: "x").code == .invalidArgument)
            #expect(
                try await alice.write(.put, "a", body: "x", ttlMs: Limits.maxContextTTLMs + 1).code == .invalidArgument)
            #expect(try await alice.write(.put, "a", body: String(repeating: "x", count: 1_025)).code == .tooLarge)
            #expect(try await alice.write(.put, "a", body: "{", attributes: json).code == .invalidJSON)
            #expect(try await alice.write(.touch, "a").code == .invalidArgument, "touch needs a TTL")
            var group = ContextAttributes(scope: .group)
            group.writers = ["bob"]
            #expect(try await alice.write(.put, "a", body: "x", attributes: group).code == .invalidArgument)
            #expect(try await alice.write(.create, "a", body: "x", expected: 3).code == .invalidArgument)
            #expect(try await alice.get("a").code == .unknownContext, "nothing was created")
            for paths in [["no-slash"], ["/ok", "~2"]] {
                do {
                    try await alice.watch("a", paths: paths)
                    Issue.record("a watch of \(paths), not all JSON Pointers, started")
                } catch let error as BusError {
                    #expect(error.code == .invalidPointer)
                }
            }
            await alice.close()
        }
    }

    @Test func scopesDecideWhoReadsAndWrites() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            var bob = try await ContextPeer.connect(bus, "bob")
            var carol = try await ContextPeer.connect(bus, "carol")
            var observer = try await ContextPeer.connect(bus, "auditor", roles: ["observer"])
            var admin = try await ContextPeer.connect(bus, "root", roles: ["admin"])
            _ = try await alice.put("private", "{}", scope: .private)
            _ = try await alice.put("group", "{}", scope: .group, readers: ["bob"])
            _ = try await alice.put("shared", "{}", scope: .shared, readers: ["bob"], writers: ["carol"])
            _ = try await alice.put("tenant", "{}", scope: .tenant, writers: ["carol"])
            // Who reads and who writes each, as docs/protocol.md states.
            let expected: [(String, read: [String], write: [String])] = [
                ("private", [], []), ("group", ["bob"], ["bob"]), ("shared", ["bob", "carol"], ["carol"]),
                ("tenant", ["bob", "carol"], ["carol"]),
            ]
            for (id, readers, writers) in expected {
                for (name, peer) in [("bob", bob), ("carol", carol)] {
                    var peer = peer
                    let read = try await peer.get(id)
                    #expect(readers.contains(name) ? read.code == nil : read.code == .forbidden, "\(name) reads \(id)")
                    let write = try await peer.write(.mergePatch, id, body: #"{"by":"\#(name)"}"#)
                    #expect(
                        writers.contains(name) ? write.code == nil : write.code == .forbidden, "\(name) writes \(id)")
                }
                #expect(try await observer.get(id).code == nil, "observers read every context")
                #expect(
                    try await observer.write(.mergePatch, id, body: "{}").code == .forbidden, "observers do not write")
                #expect(try await admin.write(.mergePatch, id, body: #"{"admin":1}"#).code == nil, "admins write")
            }
            // Only the owner grants: a writer cannot widen the scope.
            let widen = ContextAttributes(contentType: .json, scope: .tenant, writers: ["carol", "bob"])
            #expect(try await carol.write(.update, "tenant", body: "{}", attributes: widen).code == .forbidden)
            #expect(try await alice.write(.update, "tenant", body: "{}", attributes: widen).code == nil)
            let listed = try await bob.page { .contextList(ContextList(ref: $0)) }.get().heads.map(\.id)
            #expect(listed == ["group", "shared", "tenant"], "bob lists what he may read")
            let denied = await bus.audit.first(where: { $0.kind == "context.denied" && $0.agentID == "bob" })
            #expect(denied.detail["id"] == "private")
            for peer in [alice, bob, carol, observer, admin] { await peer.close() }
        }
    }

    @Test func listFiltersAndPages() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            for id in ["plans.a", "plans.b", "plans.c.d", "notes.a"] { _ = try await alice.put(id, "{}") }
            var tagged = ContextAttributes(kind: "note", metadata: [MetadataEntry(key: "topic", value: "ml")])
            tagged.scope = .tenant
            _ = try await alice.write(.put, "notes.b", body: "x", attributes: tagged).get()
            func ids(_ list: ContextList) async throws -> [String] {
                try await alice.page { ref in
                    var list = list
                    list.ref = ref
                    return .contextList(list)
                }.get().heads.map(\.id)
            }
            #expect(try await ids(ContextList(ref: 0, pattern: "plans.*")) == ["plans.a", "plans.b"])
            #expect(try await ids(ContextList(ref: 0, pattern: "plans.>")) == ["plans.a", "plans.b", "plans.c.d"])
            #expect(try await ids(ContextList(ref: 0, prefix: "notes.")) == ["notes.a", "notes.b"])
            #expect(try await ids(ContextList(ref: 0, kind: "note")) == ["notes.b"])
            #expect(
                try await ids(ContextList(ref: 0, metadata: [MetadataEntry(key: "topic", value: "ml")])) == ["notes.b"])
            let first = try await alice.page { .contextList(ContextList(ref: $0, limit: 2)) }.get()
            #expect(first.heads.map(\.id) == ["notes.a", "notes.b"] && first.nextCursor == "notes.b")
            let second = try await alice.page { .contextList(ContextList(ref: $0, cursor: first.nextCursor, limit: 2)) }
            #expect(try second.get().heads.map(\.id) == ["plans.a", "plans.b"])
            _ = try await alice.write(.delete, "plans.a").get()
            #expect(
                try await ids(ContextList(ref: 0, pattern: "plans.*")) == ["plans.b"], "deleted ones are not listed")
            #expect(
                try await alice.page { .contextList(ContextList(ref: $0, pattern: "a.>.b")) }.code == .invalidArgument)
            await alice.close()
        }
    }

    @Test func watchesAreOrderedAndResumeWithoutGaps() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            var bob = try await ContextPeer.connect(bus, "bob")
            let one = try await bob.watch("plans.q3")
            let all = try await bob.watch("plans.>", start: .snapshot)
            _ = try await alice.put("plans.q3", #"{"n":0}"#)
            for n in 1...4 { _ = try await alice.write(.put, "plans.q3", body: #"{"n":\#(n)}"#).get() }
            _ = try await alice.put("plans.q4", "{}")
            _ = try await alice.write(.delete, "plans.q4").get()
            let events = try await bob.nextEvents(12)
            let single = events.filter { $0.watch == one }
            #expect(single.map(\.head.version) == [1, 2, 3, 4, 5])
            #expect(single.map(\.kind) == [.created, .updated, .updated, .updated, .updated])
            #expect(single.last.map { String(buffer: $0.payload) } == #"{"n":4}"#)
            let pattern = events.filter { $0.watch == all }
            #expect(pattern.map(\.head.revision) == Array(1...7))
            #expect(pattern.suffix(2).map(\.kind) == [.created, .deleted])

            // Resuming: after version 3 of one id, after revision 5 of the pattern; then live again.
            var carol = try await ContextPeer.connect(bus, "carol")
            let resumed = try await carol.watch("plans.q3", start: .after, after: 3)
            let resumedAll = try await carol.watch("plans.>", start: .after, after: 5)
            _ = try await alice.write(.put, "plans.q3", body: #"{"n":5}"#).get()
            let later = try await carol.nextEvents(6)
            #expect(later.filter { $0.watch == resumed }.map(\.head.version) == [4, 5, 6])
            #expect(later.filter { $0.watch == resumedAll }.map(\.head.revision) == [6, 7, 8])
            await #expect(throws: BusError.self) { try await carol.watch("plans.q3", start: .after, after: 99) }
            // A snapshot watch of one id: its current version, then changes.
            let snapshot = try await carol.watch("plans.q3", start: .snapshot)
            let current = try await carol.nextEvents(1)
            #expect(
                current.first?.watch == snapshot && current.first?.kind == .snapshot && current.first?.head.version == 6
            )
            // Unwatched: no more events of it.
            let unwatchRef = carol.ref()
            #expect(
                try await carol.call(.contextUnwatch(ContextUnwatch(ref: unwatchRef, watch: resumed)), ref: unwatchRef)
                    == .ok(Ok(ref: unwatchRef)))
            _ = try await alice.write(.put, "plans.q3", body: "{}").get()
            let last = try await carol.nextEvents(2)
            #expect(Set(last.map(\.watch)) == [resumedAll, snapshot])
            for peer in [alice, bob, carol] { await peer.close() }
        }
    }

    @Test func compactedHistoryIsNamed() async throws {
        try await TestBus.with({ $0.supervisor.contextHistory = 4 }) { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            for n in 1...10 { _ = try await alice.put("counter", "\(n)") }
            let history = try await alice.page { .contextHistory(ContextQuery(ref: $0, id: "counter")) }.get()
            #expect(history.heads.map(\.version) == [10, 9, 8, 7])
            do {
                try await alice.watch("counter", start: .after, after: 5)
                Issue.record("a watch after a compacted version started")
            } catch let error as BusError {
                #expect(error.code == .compacted && error.oldestHeld == 7)
            }
            do {
                try await alice.watch(">", start: .after, after: 2)
                Issue.record("a pattern watch after a compacted revision started")
            } catch let error as BusError {
                #expect(error.code == .compacted && error.oldestHeld == 7)
            }
            try await alice.watch("counter", start: .after, after: 7)
            #expect(try await alice.nextEvents(3).map(\.head.version) == [8, 9, 10])
            #expect(try await alice.get("counter", version: 2).code == .compacted)
            await alice.close()
        }
    }

    @Test func fieldWatchesHearOnlyTheirPathsAsPatches() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            var bob = try await ContextPeer.connect(bus, "bob")
            _ = try await alice.put("doc", #"{"a":{"b":1,"x":0},"c":1}"#)
            let watch = try await bob.watch("doc", start: .snapshot, paths: ["/a/b", "/new"])
            _ = try await alice.write(.mergePatch, "doc", body: #"{"c":2}"#).get()  // untouched
            _ = try await alice.write(.mergePatch, "doc", body: #"{"a":{"b":2}}"#).get()
            _ = try await alice.write(.mergePatch, "doc", body: #"{"a":{"x":1}}"#).get()  // untouched
            _ = try await alice.write(.mergePatch, "doc", body: #"{"new":[1]}"#).get()
            _ = try await alice.write(.delete, "doc").get()
            let events = try await bob.nextEvents(4)
            #expect(events.allSatisfy { $0.watch == watch && $0.payloadKind == .patch })
            #expect(events.map(\.head.version) == [1, 3, 5, 6])
            #expect(events.map(\.kind) == [.snapshot, .updated, .updated, .deleted])
            let patches = events.map { String(buffer: $0.payload) }
            // Applied to nothing, a path comes with its nearest new ancestor.
            #expect(patches[0] == #"[{"op":"add","path":"/a","value":{"b":1,"x":0}}]"#)
            #expect(patches[1] == #"[{"op":"replace","path":"/a/b","value":2}]"#)
            #expect(patches[2] == #"[{"op":"add","path":"/new","value":[1]}]"#)
            #expect(patches[3] == #"[{"op":"remove","path":"/a/b"},{"op":"remove","path":"/new"}]"#)
            for peer in [alice, bob] { await peer.close() }
        }
    }

    @Test func lineageFollowsParentLinks() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            var bob = try await ContextPeer.connect(bus, "bob")
            _ = try await alice.put("doc", #"{"text":"..."}"#)
            _ = try await alice.put("summary", "{}", parents: [ContextParent(id: "doc", version: 1)])
            _ = try await alice.put("secret", "{}", scope: .private, parents: [ContextParent(id: "doc", version: 1)])
            _ = try await alice.put(
                "conclusion", "{}",
                parents: [ContextParent(id: "summary", version: 1), ContextParent(id: "doc", version: 1)])
            let ancestors = try await alice.page { .contextLineage(ContextQuery(ref: $0, id: "conclusion")) }.get()
            #expect(ancestors.heads.map(\.id) == ["summary", "doc"])
            let descendants = try await bob.page {
                .contextLineage(ContextQuery(ref: $0, id: "doc", selector: 1))
            }.get()
            #expect(descendants.heads.map(\.id) == ["conclusion", "summary"], "bob does not see the private one")
            let near = try await alice.page { .contextLineage(ContextQuery(ref: $0, id: "doc", selector: 1, depth: 1)) }
            #expect(try near.get().heads.map(\.id) == ["conclusion", "secret", "summary"])
            #expect(
                try await alice.page { .contextLineage(ContextQuery(ref: $0, id: "doc", selector: 2)) }.code
                    == .invalidArgument)
            for peer in [alice, bob] { await peer.close() }
        }
    }

    @Test func expiredContextsAreSweptAndHeardOf() async throws {
        try await TestBus.with { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            var bob = try await ContextPeer.connect(bus, "bob")
            let watch = try await bob.watch("lease")
            let head = try await alice.put("lease", #"{"holder":"alice"}"#, ttlMs: 60_000)
            #expect(head.expiresMs >= head.updatedMs + 60_000)
            let touched = try await alice.write(.touch, "lease", ttlMs: 1).get()
            #expect(touched.version == 2 && touched.checksum == head.checksum)
            let events = try await bob.nextEvents(3)
            #expect(events.map(\.kind) == [.created, .updated, .expired] && events.allSatisfy { $0.watch == watch })
            #expect(events.last?.head.version == 3)
            #expect(try await alice.get("lease").code == .contextExpired)
            #expect(try await alice.write(.update, "lease", body: "{}").code == .contextExpired)
            #expect(try await alice.put("lease", "{}").version == 4)
            let expired = await bus.audit.first(where: { $0.kind == "context.expired" && $0.detail["id"] == "lease" })
            #expect(expired.detail["version"] == "3")
            for peer in [alice, bob] { await peer.close() }
        }
    }

    @Test func largeBodiesTravelAsStreams() async throws {
        try await TestBus.with({ $0.supervisor.contextBodyBytes = 8 << 20 }) { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            var bob = try await ContextPeer.connect(bus, "bob")
            let body = ByteBuffer(bytes: (0..<(3 << 20) + 17).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            #expect(
                try await alice.write(.put, "dataset", body: String(repeating: "x", count: (1 << 20) + 1)).code
                    == .tooLarge)
            let watch = try await bob.watch("dataset")
            let streamID = try await alice.upload(body, to: "dataset")
            let everyone = ContextAttributes(kind: "dataset", scope: .tenant)
            let head = try await alice.write(.put, "dataset", attributes: everyone, bodyStream: streamID).get()
            #expect(
                head.size == UInt64(body.readableBytes)
                    && head.checksum == Array(SHA256.hash(data: Array(body.readableBytesView))))
            // The upload is used up; another write cannot name it.
            #expect(try await alice.write(.put, "dataset", bodyStream: streamID).code == .unknownStream)
            // An event announces it without the body (over 64 KiB); a GET streams it.
            let event = try await bob.nextEvents(1)[0]
            #expect(event.watch == watch && event.payloadKind == EventPayload.none && event.head.version == 1)
            let ref = bob.ref()
            guard
                case .context(let reply) = try await bob.call(
                    .contextGet(ContextGet(ref: ref, id: "dataset")), ref: ref)
            else { Issue.record("no CONTEXT"); return }
            #expect(reply.status == .streamed && reply.body.readableBytes == 0 && reply.head == head)
            #expect(try await bob.streamedBody(ref: ref) == body)
            // A patch of a large JSON body, and a body over the limit of context bodies.
            let json = ByteBuffer(string: "{\"rows\":\"" + String(repeating: "r", count: 2 << 20) + "\"}")
            let jsonStream = try await alice.upload(json, to: "table")
            let table = ContextAttributes(contentType: .json)
            _ = try await alice.write(.create, "table", attributes: table, bodyStream: jsonStream).get()
            #expect(try await alice.write(.mergePatch, "table", body: #"{"n":1}"#).get().version == 2)
            let huge = ByteBuffer(repeating: 0, count: (8 << 20) + 1)
            do {
                _ = try await alice.upload(huge, to: "huge")
                Issue.record("an upload over the limit of context bodies started")
            } catch let error as BusError {
                #expect(error.code == .tooLarge)
            }
            let mismatched = try await alice.upload(ByteBuffer(string: "small"), to: "elsewhere")
            #expect(try await alice.write(.put, "dataset", bodyStream: mismatched).code == .invalidArgument)
            for peer in [alice, bob] { await peer.close() }
        }
    }

    @Test func theBoundsOfContextMemoryAndWatchesRefuseWithOverloaded() async throws {
        try await TestBus.with({
            $0.supervisor.contextBytes = 3_072
            $0.supervisor.maxWatchesPerSession = 2
        }) { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            let kilobyte = String(repeating: "x", count: 1_000)
            // Each version costs its body and 512 bytes: two fit in 3,072, a third does not.
            _ = try await alice.write(.put, "a", body: kilobyte).get()
            _ = try await alice.write(.put, "b", body: kilobyte).get()
            let full = try await alice.write(.put, "c", body: kilobyte)
            #expect(full.code == .overloaded)
            if case .failure(let error) = full { #expect(error.retryAfterMs > 0) }
            #expect(try await alice.get("c").code == .unknownContext, "nothing was written")
            try await alice.watch("a")
            try await alice.watch("b")
            do {
                try await alice.watch("c")
                Issue.record("a third watch started")
            } catch let error as BusError {
                #expect(error.code == .overloaded)
            }
            await alice.close()
        }
    }

    @Test func aWatcherThatFallsBehindIsToldWhereToResume() async throws {
        try await TestBus.with({
            $0.supervisor.watchQueueCapacity = 8
            $0.supervisor.contextHistory = 1_000
        }) { bus in
            var alice = try await ContextPeer.connect(bus, "alice")
            var bob = try await ContextPeer.connect(bus, "bob")
            let watch = try await bob.watch("big")
            try await bob.raw.stopReading()
            // Events of 60 KiB each: the socket buffers fill (some MiB), then the session's queue of 8,
            // then the watch ends.
            let body = String(repeating: "x", count: 60 << 10)
            let everyone = ContextAttributes(scope: .tenant)
            let total: UInt64 = 800
            for _ in 1...total { _ = try await alice.write(.put, "big", body: body, attributes: everyone).get() }
            try await bob.raw.resumeReading()
            var seen: [UInt64] = []
            while let event = try await bob.nextEvents(1).first { seen.append(event.head.version) }
            let ended = try #require(bob.watchErrors.first, "the watch kept up with \(total) events")
            #expect(ended.ref == watch && ended.error.code == .overloaded)
            #expect(seen == Array(1...UInt64(seen.count)), "in order, without gaps, up to where it ended")
            #expect(ended.error.message == "watch fell behind after \(seen.count)")
            // Watching again from the last version seen misses nothing: a replay that does not fit
            // ends the same way, after what fit, and the next resume goes on from there.
            while seen.count < total {
                bob.watchErrors.removeAll()
                _ = try await bob.watch("big", start: .after, after: UInt64(seen.count))
                while seen.count < total, let event = try await bob.nextEvents(1).first {
                    seen.append(event.head.version)
                }
                #expect(bob.watchErrors.allSatisfy { $0.error.code == .overloaded })
            }
            #expect(seen == Array(1...total))
            for peer in [alice, bob] { await peer.close() }
        }
    }
}
