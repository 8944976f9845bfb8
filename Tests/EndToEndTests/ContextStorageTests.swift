import Bus
import Foundation
import Logging
import Synchronization
import Testing

@testable import Persistence

extension SidecarTests {
    /// Context versions in the real PostgreSQL (``PostgresContextStore``), each test in a database of
    /// its own, and the context mirror in the real Redis.
    @Suite struct ContextStorageTests {
        @Test func committedVersionsLoadBackFieldByField() async throws {
            try await Self.withDatabase { url in
                let (store, outcomes) = try await Self.started(url)
                let plan = [
                    Self.record("acme", "plan", version: 1), Self.record("acme", "plan", version: 2),
                    Self.record("acme", "plan", version: 3, state: .deleted),
                ]
                let other = Self.record("globex", "plan", version: 1)
                for record in [other] + plan { #expect(store.submit(record, keep: 10)) }
                try await Sidecars.eventually("the versions to be committed") { outcomes.committed.count == 4 }
                store.close()
                #expect(outcomes.committed == [other] + plan, "reported in submission order")
                #expect(outcomes.failed.isEmpty)
                #expect(store.batches >= 1)
                // By tenant, id, then version, every field as written: tombstone, escapes, lineage and all.
                #expect(try PostgresContextStore.load(url: url) == plan + [other])
            }
        }

        @Test func aCommitRemovesTheVersionsBeyondTheNewestKept() async throws {
            try await Self.withDatabase { url in
                let (store, outcomes) = try await Self.started(url)
                let versions = (1...3).map { Self.record("acme", "plan", version: $0) }
                #expect(store.submit(versions[0], keep: 2))
                #expect(store.submit(versions[1], keep: 2))
                try await Sidecars.eventually("two versions committed") { outcomes.committed.count == 2 }
                #expect(try PostgresContextStore.load(url: url) == [versions[0], versions[1]])
                #expect(store.submit(versions[2], keep: 2))
                try await Sidecars.eventually("the third version committed") { outcomes.committed.count == 3 }
                #expect(
                    try PostgresContextStore.load(url: url) == [versions[1], versions[2]],
                    "version 1 went in the commit of version 3")
                store.close()
            }
        }

        /// The fence of a cluster's homes: once another node claimed a tenant's home, the earlier
        /// home's commits of that tenant are refused (the whole batch), and the tenant is reported
        /// fenced; its commits of tenants it still holds go on, and the new home's commit; a new
        /// claim lets it commit again. A store that never claimed (a single node) is not fenced.
        @Test func aHomeThatAnotherNodeClaimedSinceCannotCommit() async throws {
            try await Self.withDatabase { url in
                let (earlier, earlierOutcomes) = try await Self.started(url)
                let (later, laterOutcomes) = try await Self.started(url)
                let (single, singleOutcomes) = try await Self.started(url)
                try earlier.claimHome(of: "acme", node: "n0")
                try earlier.claimHome(of: "globex", node: "n0")
                #expect(earlier.submit(Self.record("acme", "plan", version: 1), keep: 10))
                try await Sidecars.eventually("the first home's commit") { earlierOutcomes.committed.count == 1 }
                try later.claimHome(of: "acme", node: "n1")
                #expect(earlier.submit(Self.record("acme", "plan", version: 2), keep: 10))
                try await Sidecars.eventually("the fenced commit to fail") { earlierOutcomes.failed.count == 1 }
                #expect(earlier.takeFenced() == ["acme"] && earlier.takeFenced().isEmpty)
                #expect(earlier.submit(Self.record("globex", "plan", version: 1), keep: 10))
                #expect(later.submit(Self.record("acme", "plan", version: 2, body: #"{"by":"n1"}"#), keep: 10))
                #expect(single.submit(Self.record("initech", "plan", version: 1), keep: 10))
                try await Sidecars.eventually("the other commits") {
                    earlierOutcomes.committed.count == 2 && laterOutcomes.committed.count == 1
                        && singleOutcomes.committed.count == 1
                }
                try earlier.claimHome(of: "acme", node: "n0")
                #expect(earlier.submit(Self.record("acme", "plan", version: 3), keep: 10))
                try await Sidecars.eventually("the commit after a new claim") { earlierOutcomes.committed.count == 3 }
                for store in [earlier, later, single] { store.close() }
                let stored = try PostgresContextStore.load(url: url)
                #expect(
                    stored.map { "\($0.tenant)/\($0.head.version)" } == [
                        "acme/1", "acme/2", "acme/3", "globex/1", "initech/1",
                    ])
                #expect(stored[1].body == Array(#"{"by":"n1"}"#.utf8))
            }
        }

        @Test func aVersionWrittenAgainReplacesTheStoredOne() async throws {
            try await Self.withDatabase { url in
                let (store, outcomes) = try await Self.started(url)
                let first = Self.record("acme", "plan", version: 1, body: #"{"step":"first"}"#)
                var again = Self.record("acme", "plan", version: 1, body: #"{"step":"again"}"#)
                again.head.revision = 500
                again.head.attributes.metadata = [MetadataEntry(key: "retried", value: "yes")]
                #expect(store.submit(first, keep: 10))
                try await Sidecars.eventually("the first write committed") { outcomes.committed.count == 1 }
                #expect(store.submit(again, keep: 10))
                try await Sidecars.eventually("the second write committed") { outcomes.committed.count == 2 }
                store.close()
                #expect(try PostgresContextStore.load(url: url) == [again])
            }
        }

        /// PostgreSQL refuses a NUL in a text for good: that version fails alone, whatever batch it
        /// shared, and the others commit.
        @Test func aVersionPostgresRefusesFailsAloneAndTheOthersCommit() async throws {
            try await Self.withDatabase { url in
                let (store, outcomes) = try await Self.started(url)
                let good = [Self.record("acme", "a", version: 1), Self.record("acme", "c", version: 1)]
                var bad = Self.record("acme", "b", version: 1)
                bad.head.attributes.source = "nul\u{0}inside"
                for record in [good[0], bad, good[1]] { #expect(store.submit(record, keep: 10)) }
                try await Sidecars.eventually("every outcome") { outcomes.count >= 3 }
                store.close()
                #expect(outcomes.committed == good && outcomes.failed == [bad])
                #expect(outcomes.errors.allSatisfy { $0.code == .storageUnavailable && $0.retryAfterMs > 0 })
                #expect(try PostgresContextStore.load(url: url) == good)
            }
        }

        @Test func anUnreachableDatabaseFailsWhatItTookThenRefuses() async throws {
            let url = "postgresql://postgres@127.0.0.1:1/acb?connect_timeout=1"  // nothing listens there
            let store = PostgresContextStore(url: url, logger: Logger(label: "acb-test"))
            let outcomes = Outcomes()
            let record = Self.record("acme", "plan", version: 1)
            #expect(!store.submit(record, keep: 2), "not started")
            store.start { outcomes.append($0) }
            // Until a connection attempt fails, records wait for it; then they are failed, not committed.
            _ = store.submit(record, keep: 2)
            try await Sidecars.eventually("the first connection attempt to fail") { !store.isConnected }
            #expect(!store.submit(record, keep: 2))
            store.close()
            #expect(!store.submit(record, keep: 2), "closed")
            #expect(outcomes.committed.isEmpty && store.batches == 0 && store.queued == 0)
            #expect(throws: SidecarError.self) { try PostgresContextStore.load(url: url) }
        }

        @Test func discardQueuedTakesBackWhatNoBatchHasTaken() async throws {
            try await Self.withDatabase { url in
                let (store, outcomes) = try await Self.started(url)
                // Holds the table, so the first batch waits inside its transaction and the rest stays queued.
                let blocker = try PostgresConnection(url: url)
                try blocker.execute("BEGIN; LOCK TABLE context_versions IN SHARE MODE")
                let versions = (1...3).map { Self.record("acme", "plan", version: $0) }
                #expect(store.submit(versions[0], keep: 10))
                try await Sidecars.eventually("the first version to be taken into a batch") { store.queued == 0 }
                #expect(store.submit(versions[1], keep: 10))
                #expect(store.submit(versions[2], keep: 10))
                #expect(store.queued == 2)
                #expect(store.discardQueued() == [versions[1], versions[2]])
                #expect(store.queued == 0 && store.discardQueued().isEmpty)
                try blocker.execute("ROLLBACK")
                try await Sidecars.eventually("the first batch to commit") { outcomes.count == 1 }
                store.close()
                #expect(outcomes.committed == [versions[0]], "nothing is reported of what was taken back")
                #expect(try PostgresContextStore.load(url: url) == [versions[0]])
            }
        }

        @Test func redisMirrorsAContextUntilItIsRemoved() async throws {
            let url = try Sidecars.redis()
            let spool = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: spool) }
            let state = try RedisState(
                settings: RedisState.Settings(url: url, spoolDirectory: spool), logger: Logger(label: "acb-test"))
            defer { state.close() }
            let redis = try RedisConnection(url: url)
            let tenant = TestBus.freshTenant()
            func mirrored() throws -> String? { try RedisState.context(url: url, tenant: tenant, id: "plan") }

            state.mirrorContext(tenant: tenant, id: "plan", value: #"{"step":1}"#, ttlMs: 60_000)
            try await Sidecars.eventually("the mirror in Redis") { try mirrored() == #"{"step":1}"# }
            guard case .integer(let ttl) = try redis.command("PTTL", "acb:ctx:\(tenant)/plan") else {
                Issue.record("no time to live")
                return
            }
            #expect(ttl > 0 && ttl <= 60_000)

            state.mirrorContext(tenant: tenant, id: "plan", value: #"{"step":2}"#, ttlMs: 0)
            try await Sidecars.eventually("the next version in Redis") { try mirrored() == #"{"step":2}"# }
            #expect(try redis.command("PTTL", "acb:ctx:\(tenant)/plan") == .integer(-1), "no expiry")

            state.mirrorContext(tenant: tenant, id: "plan", value: nil, ttlMs: 0)
            try await Sidecars.eventually("the mirror to be removed") { try mirrored() == nil }
        }

        // MARK: - Helpers

        /// Runs `body` with the URL of a new database, migrated, dropped afterwards: what ``load``
        /// reads there is what the test wrote.
        static func withDatabase(_ body: (String) async throws -> Void) async throws {
            let base = try Sidecars.postgres()
            let name = "acb_ctx_\(UUID().uuidString.prefix(8).lowercased())"
            _ = try Sidecars.query("CREATE DATABASE \(name)")
            defer { _ = try? Sidecars.query("DROP DATABASE \(name) WITH (FORCE)") }
            let url = base.replacingOccurrences(of: "/acb", with: "/\(name)")
            try Migrator(directory: "\(Sidecars.root)/migrations").apply(url: url)
            try await body(url)
        }

        /// A started store of `url`, connected, with the outcomes it reports.
        static func started(_ url: String) async throws -> (PostgresContextStore, Outcomes) {
            let store = PostgresContextStore(url: url, logger: Logger(label: "acb-test"))
            let outcomes = Outcomes()
            store.start { outcomes.append($0) }
            try await Sidecars.eventually("the store to connect") { store.isConnected }
            return (store, outcomes)
        }

        /// A version with every field set, text that needs escaping in arrays and JSON, and a
        /// parent version above what a signed 32-bit number holds; a tombstone has no body.
        static func record(
            _ tenant: String, _ id: String, version: UInt64, body: String? = nil, state: ContextState = .live
        ) -> ContextRecord {
            let bytes = state == .live ? Array((body ?? #"{"step":\#(version)}"#).utf8) : []
            let attributes = ContextAttributes(
                kind: "plan", contentType: .json, label: "1.\(version).0", scope: .shared,
                readers: ["bob", #"a"b\c,{d} e"#], writers: ["carol"],
                metadata: [
                    MetadataEntry(key: "owner", value: "alice"),
                    MetadataEntry(key: "quote", value: "say \"hi\" \\ \n\tnaïve ✓ \u{1}"),
                ],
                parents: [ContextParent(id: "brief", version: 7), ContextParent(id: "notes", version: 1 << 40)],
                source: "req-\(version)")
            let head = ContextHead(
                id: id, owner: "alice", attributes: attributes, version: version, revision: 100 + version,
                checksum: (0..<32).map { UInt8(truncatingIfNeeded: Int(version) * 31 + $0) },
                size: UInt64(bytes.count), createdMs: 1_765_000_000_000, updatedMs: 1_765_000_000_000 + version,
                updatedBy: "bob", expiresMs: version == 2 ? 1_800_000_000_000 : 0, state: state)
            return ContextRecord(tenant: tenant, head: head, body: bytes)
        }

        /// The outcomes a ``PostgresContextStore`` reported, in order, from its thread.
        final class Outcomes: Sendable {
            private let reported = Mutex<[ContextStorageOutcome]>([])

            func append(_ outcome: ContextStorageOutcome) { reported.withLock { $0.append(outcome) } }

            var count: Int { reported.withLock { $0.count } }

            /// The records of `.committed` outcomes, in order.
            var committed: [ContextRecord] { records(committed: true) }

            /// The records of `.failed` outcomes, in order.
            var failed: [ContextRecord] { records(committed: false) }

            /// The errors of `.failed` outcomes, in order.
            var errors: [BusError] {
                reported.withLock { outcomes in
                    outcomes.compactMap { outcome -> BusError? in
                        if case .failed(_, let error) = outcome { error } else { nil }
                    }
                }
            }

            private func records(committed: Bool) -> [ContextRecord] {
                reported.withLock { outcomes in
                    outcomes.flatMap { outcome -> [ContextRecord] in
                        switch outcome {
                        case .committed(let records): committed ? records : []
                        case .failed(let records, _): committed ? [] : records
                        }
                    }
                }
            }
        }
    }
}
