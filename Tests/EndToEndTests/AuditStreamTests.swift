import ACBClient
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

@testable import Persistence

extension SidecarTests {
    /// The audit stream, read back from the broker by a real Kafka consumer.
    @Suite struct AuditStreamTests {
        @Test func everyEventReachesTheTenantsTopicWithTheDocumentedFields() async throws {
            let tenant = TestBus.freshTenant()
            try await TestBus.withSidecars(kafka: true) { bus in
                try await SidecarTests.DurableDeliveryTests.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)
                #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "hi")).outcome == .queued)
                await alice.close()
            }
            // bob: authenticated, opened, registered, closed; alice: authenticated, opened, queued,
            // closed (and the observer that
            // waited for bob to go offline). Read to the end, since a record may come twice.
            let records = try await Sidecars.kafkaRecords(
                topic: AuditRecord.topic(tenant: tenant), count: 1_000, timeout: 5)
            var seen = Set<String>()
            let decoded = try records.compactMap { line -> (key: String?, record: AuditRecord)? in
                let value = try #require(line["value"] as? String)
                let record = try JSONDecoder().decode(AuditRecord.self, from: Data(value.utf8))
                guard !record.agent.hasPrefix("observer-"), seen.insert(record.id).inserted else { return nil }
                return (line["key"] as? String, record)
            }
            #expect(decoded.count == 8)
            #expect(
                Set(decoded.map { "\($0.record.agent) \($0.record.kind)" }) == [
                    "bob security.authenticated", "bob session.opened", "bob agent.registered", "bob session.closed",
                    "alice security.authenticated", "alice session.opened", "alice message.queued",
                    "alice session.closed",
                ])
            for (key, record) in decoded {
                #expect(key == record.agent && record.tenant == tenant && record.schema == 1)
                #expect(!record.id.isEmpty && record.at > 1_700_000_000_000)
            }
            let queued = try #require(decoded.first { $0.record.kind == "message.queued" }?.record)
            #expect(queued.detail["to"] == "bob" && queued.detail["bytes"] == "2" && queued.detail["message"] != nil)
        }

        @Test func tenantsMapToDistinctLegalTopicNames() {
            #expect(AuditRecord.topic(tenant: "acme") == "acb.acme.audit")
            #expect(AuditRecord.topic(tenant: "") == "acb.audit")
            #expect(AuditRecord.topic(tenant: "a_b") == "acb.a_5Fb.audit")
            #expect(AuditRecord.topic(tenant: "a:b") == "acb.a_3Ab.audit")
            #expect(AuditRecord.topic(tenant: "a_3Ab") != AuditRecord.topic(tenant: "a:b"))
            let long = String(repeating: ":", count: 128)
            #expect(AuditRecord.topic(tenant: long).count <= 249)
            #expect(AuditRecord.topic(tenant: long) != AuditRecord.topic(tenant: long.dropLast() + "_"))
        }

        @Test func theJournalKeepsRecordsInOrderAcrossReopeningAndDropsATornTail() throws {
            let directory = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var journal: Journal? = try Journal(directory: directory, capacity: 1 << 20, segmentBytes: 64)
            for index in 0..<10 { try journal?.append(Array("record \(index)".utf8)) }
            let first = try #require(journal?.read(from: journal!.committed))
            #expect(first.map { String(decoding: $0.record, as: UTF8.self) } == (0..<10).map { "record \($0)" })
            journal?.commit(through: first[3].next)
            journal = nil
            // A crash in the middle of a write leaves part of a record.
            let segments = try FileManager.default.contentsOfDirectory(atPath: directory).filter {
                $0.hasSuffix(".seg")
            }
            let last = try #require(segments.sorted().last)
            let handle = try #require(FileHandle(forWritingAtPath: "\(directory)/\(last)"))
            handle.seekToEndOfFile()
            handle.write(Data([0, 0, 0, 50, 1, 2]))
            try handle.close()

            let reopened = try Journal(directory: directory, capacity: 1 << 20, segmentBytes: 64)
            let rest = reopened.read(from: reopened.committed)
            #expect(rest.map { String(decoding: $0.record, as: UTF8.self) } == (4..<10).map { "record \($0)" })
            try reopened.append(Array("after".utf8))
            #expect(
                reopened.read(from: rest.last!.next).map { String(decoding: $0.record, as: UTF8.self) } == ["after"])
        }

        @Test func aFullJournalRefusesInsteadOfGrowing() throws {
            let directory = Sidecars.scratch()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let journal = try Journal(directory: directory, capacity: 100)
            try journal.append([UInt8](repeating: 1, count: 60))
            #expect(throws: Journal.Full.self) { try journal.append([UInt8](repeating: 2, count: 60)) }
            journal.commit(through: journal.end)
            #expect(journal.isEmpty && journal.pendingBytes == 0)
        }
    }
}
