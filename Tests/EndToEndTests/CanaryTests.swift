import ACBClient
import Actors
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

@testable import Persistence

extension SidecarTests {
    /// The proof of docs/security.md "End-to-end encryption": a plaintext sent sealed on every
    /// path reaches its readers intact and nothing the bus keeps, logs or answers.
    @Suite struct CanaryTests {
        typealias Durable = SidecarTests.DurableDeliveryTests

        /// Everything the run left behind, gathered once the bus is gone.
        struct Traces {
            var adminResponses: [String: Data] = [:]
            var log = Data()
            var auditLog = Data()
            var auditRecords: [String] = []
            /// A file: the database may be large (a developer's, after benchmarks).
            var postgresDump = ""
            var redisDump = Data()
        }

        @Test func aSealedPlaintextReachesItsReadersAndNothingTheBusKeeps() async throws {
            // `control` goes in plaintext where the bus keeps payloads: the search must find it,
            // or it could not find the canary either.
            let (canary, control) = (Canary(), Canary())
            let tenant = TestBus.freshTenant()
            let spool = Sidecars.scratch()
            let downloads = Sidecars.scratch()
            let auditLogPath = "\(spool)/audit.jsonl"
            try FileManager.default.createDirectory(atPath: downloads, withIntermediateDirectories: true)
            defer { for path in [spool, downloads] { try? FileManager.default.removeItem(atPath: path) } }
            let (postgres, redis, kafka) = (try Sidecars.postgres(), try Sidecars.redis(), try Sidecars.kafka())
            let log = KeptLog()
            var traces = Traces()
            var folders: [String] = []
            try await TestBus.with(
                {
                    $0.postgresURL = postgres
                    $0.redisURL = redis
                    $0.kafkaBrokers = kafka
                    $0.spoolDirectory = spool
                    $0.auditLogPath = auditLogPath
                    $0.supervisor.streamDirectory = "\(spool)/streams"
                    $0.supervisor.maxDeliveryAttempts = 2
                    $0.admin = AdminConfiguration()
                    $0.admin?.port = 0
                }, logger: log.logger("acb-canary")
            ) { bus in
                try await Self.sendEverywhere(canary, control: control, tenant: tenant, downloads: downloads, on: bus)
                traces.adminResponses = try await Self.adminResponses(tenant: tenant, on: bus)
                folders = [spool, bus.server.supervisor.configuration.streamDirectory]
            }
            traces.log = Data(log.text.utf8)
            traces.auditLog = try Data(contentsOf: URL(fileURLWithPath: auditLogPath))
            // The tenant's topic has every event of the tenant the file has: wait for as many.
            let events = traces.auditLog.split(separator: UInt8(ascii: "\n")).filter { line in
                let record = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
                return record?["tenant"] as? String == tenant
            }.count
            let records = try await Sidecars.kafkaRecords(topic: AuditRecord.topic(tenant: tenant), count: events)
            traces.auditRecords = records.map { "\($0["key"] as? String ?? "") \($0["value"] as? String ?? "")" }
            #expect(traces.auditRecords.count == events, "the audit stream has every event of the audit log file")
            #expect(traces.auditLog.isEmpty == false && traces.log.isEmpty == false)
            traces.postgresDump = try await Self.postgresDump(into: "\(downloads)/dump.sql")
            traces.redisDump = try Self.redisDump()

            for folder in folders {
                #expect(try canary.files(under: folder) == [], "the canary is in files under \(folder)")
            }
            for (path, body) in traces.adminResponses {
                #expect(!canary.isIn(body), "the canary is in the admin API's answer to GET \(path)")
            }
            #expect(!canary.isIn(traces.log), "the canary is in the bus's log")
            #expect(!canary.isIn(traces.auditLog), "the canary is in the audit log file")
            for record in traces.auditRecords {
                #expect(!canary.isIn(Data(record.utf8)), "the canary is on the audit stream: \(record)")
            }
            #expect(try !canary.isIn(file: traces.postgresDump), "the canary is in PostgreSQL")
            #expect(!canary.isIn(traces.redisDump), "the canary is in Redis's saved data")

            #expect(try control.isIn(file: traces.postgresDump), "the plaintext control is in PostgreSQL")
            #expect(control.isIn(traces.redisDump), "the plaintext control is in Redis")
            #expect(traces.adminResponses["/api/v1/contexts/control"].map(control.isIn) == true)
        }

        /// Sends the canary sealed on every path, and checks each reader gets it intact: to an
        /// online agent (box, anonymous, durable), to an offline one (stored), as a request and its
        /// reply, to a group on a topic and by broadcast, as a stream, as a context body (inline and
        /// streamed) and its update, and into the dead letters. `control` goes unsealed to the offline
        /// agent and as a context body.
        static func sendEverywhere(
            _ canary: Canary, control: Canary, tenant: String, downloads: String, on bus: TestBus
        ) async throws {
            let secret = canary.text
            let alice = try await SealingTests.keyed(bus, "alice", tenant: tenant)
            let bob = try await bus.client("bob", tenant: tenant) {
                $0.keys = .generate()
                $0.keyCheckIntervalMs = 0
                $0.downloadDirectory = downloads
            }
            let carol = try await SealingTests.keyed(bus, "carol", tenant: tenant)
            let daveKeys = AgentKeys.generate()
            await (try await SealingTests.keyed(bus, "dave", daveKeys, tenant: tenant)).close()
            try await Durable.registerOffline("dave", tenant: tenant, on: bus)
            var bobs = bob.deliveries.makeAsyncIterator()
            var carols = carol.deliveries.makeAsyncIterator()

            try await alice.send(to: .agent("bob"), ByteBuffer(string: "box \(secret)"), sealed: .box)
            try await alice.send(to: .agent("bob"), ByteBuffer(string: "anonymous \(secret)"), sealed: .anonymous)
            try await alice.send(
                to: .agent("bob"), ByteBuffer(string: "durable \(secret)"), durable: true, sealed: .box)
            #expect(
                try await alice.send(to: .agent("dave"), ByteBuffer(string: "stored \(secret)"), sealed: .box).outcome
                    == .queued)
            try await alice.send(to: .agent("dave"), ByteBuffer(string: "control \(control.text)"))
            try await alice.share("control", ByteBuffer(string: #"{"control":"\#(control.text)"}"#))
            for sent in ["box", "anonymous", "durable"] {
                #expect(try await bobs.take().text == "\(sent) \(secret)")
            }

            carol.serve { request in
                #expect(request.text == "question \(secret)" && request.sealedBy == .agent)
                return ByteBuffer(string: "answer \(secret)")
            }
            #expect(
                try await alice.request(.agent("carol"), ByteBuffer(string: "question \(secret)"), sealed: true).text
                    == "answer \(secret)")

            for client in [bob, carol] { try await client.subscribe("ops.>") }
            let group = try await alice.sealedGroup("ops", members: ["bob", "carol"])
            #expect(
                try await alice.publish(topic: "ops.news", ByteBuffer(string: "topic \(secret)"), group: group.id) == 2)
            #expect(try await alice.broadcast(ByteBuffer(string: "broadcast \(secret)"), group: group.id) == 2)
            for sent in ["topic", "broadcast"] {
                #expect(try await bobs.take().text == "\(sent) \(secret)")
                #expect(try await carols.take().text == "\(sent) \(secret)")
            }

            var streams = bob.streams.makeAsyncIterator()
            let file = ByteBuffer(bytes: Array(repeating: Array("\(secret) ".utf8), count: 60_000).joined())
            try await alice.upload(to: .agent("bob"), from: BufferSource(file), sealed: true)
            let stream = try #require(await streams.next())
            #expect(try Data(contentsOf: URL(fileURLWithPath: stream.path)) == Data(file.readableBytesView))

            let readers = ContextOptions(scope: .shared, readers: ["bob"])
            try await alice.shareSealed("plan", ByteBuffer(string: #"{"secret":"\#(secret)"}"#), options: readers)
            try await alice.updateSealed("plan", options: readers) { ByteBuffer(string: $0.text + " updated") }
            #expect(try await bob.getSealed("plan").text == #"{"secret":"\#(secret)"} updated"#)
            try await alice.shareSealed("large", file, options: readers)
            #expect(try await bob.getSealed("large").body == file)

            // Dead letters: erin refuses it until the last attempt.
            let erin = try await SealingTests.keyed(bus, "erin", tenant: tenant)
            var erins = erin.deliveries.makeAsyncIterator()
            try await alice.send(to: .agent("erin"), ByteBuffer(string: "refused \(secret)"), sealed: .box)
            while true {
                let delivery = try await erins.take()
                #expect(delivery.text == "refused \(secret)")
                delivery.nack()
                if delivery.attempt == bus.server.supervisor.configuration.maxDeliveryAttempts { break }
            }

            let dave = try await SealingTests.keyed(bus, "dave", daveKeys, tenant: tenant)
            var daves = dave.deliveries.makeAsyncIterator()
            #expect(try await daves.take().text == "stored \(secret)")
            #expect(try await daves.take().text == "control \(control.text)")
            for client in [alice, bob, carol, dave, erin] { await client.close() }
        }

        /// The answer to every GET of the admin API that shows what the run left: agents, keys,
        /// dead letters and their messages, contexts with their bodies and history, counters, metrics.
        static func adminResponses(tenant: String, on bus: TestBus) async throws -> [String: Data] {
            let admin = try await bus.admin(tenant: tenant)
            var paths = ["/metrics", "/api/v1/agents", "/api/v1/contexts", "/api/v1/tenants/\(tenant)/counters"]
            for agent in ["alice", "bob", "carol", "dave", "erin"] {
                paths += ["/api/v1/agents/\(agent)", "/api/v1/agents/\(agent)/keys"]
            }
            for context in ["plan", "large", "control"] {
                paths += ["", "/history", "/lineage"].map { "/api/v1/contexts/\(context)\($0)" }
            }
            try await Sidecars.eventually("the dead letter") {
                try await admin.get("/api/v1/dead-letters").items.count == 1
            }
            for deadLetter in try await admin.get("/api/v1/dead-letters").items {
                paths.append("/api/v1/dead-letters/\(deadLetter["id"] as? String ?? "")")
                if let message = deadLetter["message_id"] as? String { paths.append("/api/v1/messages/\(message)") }
            }
            var responses: [String: Data] = [:]
            for path in paths + ["/api/v1/dead-letters"] {
                let reply = try await admin.get(path)
                #expect([200, 404].contains(reply.status), "GET \(path): \(reply.status) \(reply.text)")
                responses[path] = reply.body
            }
            return responses
        }

        /// `pg_dump` of the whole test database, as text, into the file `path`.
        /// - Returns: `path`.
        static func postgresDump(into path: String) async throws -> String {
            let dump = try await Command.run(
                "\(try Sidecars.setting("ACB_PG_BIN"))/pg_dump", ["--file", path, try Sidecars.postgres()])
            #expect(dump.status == 0, "pg_dump: \(dump.output)")
            return path
        }

        /// What Redis saves to disk (SAVE), uncompressed so a plaintext would show.
        static func redisDump() throws -> Data {
            let redis = try RedisConnection(url: try Sidecars.redis())
            #expect(try redis.command("CONFIG", "SET", "rdbcompression", "no") == .status("OK"))
            defer { _ = try? redis.command("CONFIG", "SET", "rdbcompression", "yes") }
            #expect(try redis.command("SAVE") == .status("OK"))
            guard case .array(let dir) = try redis.command("CONFIG", "GET", "dir"),
                case .array(let name) = try redis.command("CONFIG", "GET", "dbfilename")
            else { throw SidecarError(message: "Redis did not say where it saves", connectionLost: false) }
            let (folder, file) = (try #require(dir.last?.text), try #require(name.last?.text))
            return try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(file)"))
        }
    }
}
