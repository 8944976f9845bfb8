import ACBClient
import Bus
import Foundation
import Gateway
import NIOCore
import Persistence
import Testing

@Suite(.timeLimit(.minutes(1))) struct AuditLogTests {
    @Test func lifecycleAndSecurityEventsAreWrittenToTheAuditLog() async throws {
        let path = NSTemporaryDirectory() + "acb-audit-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await TestBus.with({ $0.auditLogPath = path }) { bus in
            let alice = try await bus.client("alice")
            try await alice.register(AgentDescription(agentType: "planner", capabilities: ["plan"]))
            let observer = try await bus.client("eve", roles: ["observer"])
            await expectBusError(.forbidden) { try await observer.send(to: .agent("alice"), ByteBuffer()) }
            await expectBusError(.unauthenticated) {
                _ = try await ACBClient.connect(ClientConfiguration(port: bus.port, token: "forged"))
            }
            await observer.close()
            await alice.close()
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let records = try text.split(separator: "\n").map {
            try JSONDecoder().decode(AuditRecord.self, from: Data($0.utf8))
        }
        let kinds = Set(records.map(\.kind))
        #expect(
            kinds.isSuperset(of: [
                "session.opened", "agent.registered", "security.denied",
                "security.auth_failed", "session.closed",
            ]))
        // The same record as the audit stream's, id included: unique, of the form <run>-<n>.
        let ids = records.map(\.id)
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.split(separator: "-").count == 2 })
        let failed = try #require(records.first { $0.kind == "security.auth_failed" })
        #expect(failed.detail["reason"] == "malformed", "a stable reason code, not Swift error text")
        let registered = try #require(records.first { $0.kind == "agent.registered" })
        #expect(registered.schema == 1 && registered.tenant == "acme" && registered.agent == "alice")
        #expect(registered.detail["type"] == "planner" && registered.at > 0)
    }

    /// The file's writer is a supervised child: made to fail, it is restarted, and the events
    /// recorded meanwhile reach the file, its escalation among them.
    @Test func theWriterComesBackAfterFailingAndLosesNoEvent() async throws {
        let path = NSTemporaryDirectory() + "acb-audit-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await TestBus.with({ $0.auditLogPath = path }) { bus in
            let child = try #require(bus.server.children.first { $0.name == "audit-log" })
            child.injectFaults(5)
            var clients: [ACBClient] = []
            // The first session's events wake the writer: it fails, and fails again at each restart.
            for index in 0..<6 { clients.append(try await bus.client("agent-\(index)")) }
            try await Sidecars.eventually("the writer to run again after five failures") {
                child.current.restarts == 5 && child.current.state == .running
            }
            #expect(child.current.restarts == 5)
            for client in clients { await client.close() }
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let records = try text.split(separator: "\n").map {
            try JSONDecoder().decode(AuditRecord.self, from: Data($0.utf8))
        }
        let opened = Set(records.filter { $0.kind == "session.opened" }.map(\.agent))
        #expect(opened == Set((0..<6).map { "agent-\($0)" }))
        #expect(records.contains { $0.kind == "bus.child_failed" && $0.detail["child"] == "audit-log" })
    }
}
