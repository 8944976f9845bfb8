import ACBClient
import Actors
import Bus
import Foundation
import NIOCore
import Persistence
import Testing

@testable import Gateway

extension SidecarTests {
    /// The supervised children (docs/architecture.md, section 3): made to fail, each is restarted
    /// with backoff, /readyz and /metrics say so meanwhile, and nothing acknowledged is lost.
    @Suite struct SupervisionTests {
        @Test(arguments: ["postgres", "postgres-2", "postgres-contexts", "redis", "audit-stream"])
        func aChildThatFailsComesBackAndLosesNothing(_ name: String) async throws {
            let tenant = TestBus.freshTenant()
            // The audit stream's child exists with Kafka only; without, the audit events reach the test.
            let kafka = name == "audit-stream"
            try await SidecarTests.AdminAPITests.withAdmin(kafka: kafka) { bus in
                let http = try await bus.admin(nil)
                try await Sidecars.eventually("readiness") { try await http.get("/readyz").status == 200 }
                let child = try #require(bus.server.children.first { $0.name == name })
                try await DurableDeliveryTests.registerOffline("bob", tenant: tenant, on: bus)
                let alice = try await bus.client("alice", tenant: tenant)

                // Five failures in a row: restarted after 0.1, 0.2, 0.4, 0.8 and 1.6 s (± 20 %),
                // escalated at the fifth.
                child.injectFaults(5)
                try await Sidecars.eventually("/readyz to show \(name) failed") {
                    let ready = try await http.get("/readyz")
                    let state = ((ready.json["children"] as? [String: Any])?[name] as? [String: Any])?["state"]
                    return ready.status == 503 && state as? String == "failed"
                }
                // Work that needs the child, acknowledged while it is down or once it is back.
                for index in 0..<5 {
                    let ok = try await alice.send(
                        to: .agent("bob"), ByteBuffer(string: "m\(index)"), idempotencyKey: "k\(index)")
                    #expect(ok.outcome == .queued)
                }
                let head = try await alice.share("notes.\(name)", ByteBuffer(string: "kept"))

                try await Sidecars.eventually("\(name) to run again after five failures") {
                    let ready = try await http.get("/readyz").status == 200
                    return ready && child.current.restarts == 5
                }
                #expect(child.current.state == .running && child.current.restarts == 5)
                #expect(child.current.lastFailure == "injected fault")
                let metrics = try await http.get("/metrics").text
                #expect(metrics.contains("acb_child_restarts_total{child=\"\(name)\"} 5"))
                #expect(metrics.contains("acb_child_up{child=\"\(name)\"} 1.0"))
                if kafka {
                    // What was journaled while the relay was down reaches the broker.
                    try await Sidecars.eventually("the audit journal to be delivered") {
                        bus.server.auditStream?.pendingBytes == 0
                    }
                } else {
                    let escalation = await bus.audit.first {
                        $0.kind == "bus.child_failed" && $0.detail["child"] == name
                    }
                    #expect(escalation.detail["restarts"] == "5")
                }

                // Nothing acknowledged was lost.
                let bob = try await bus.client("bob", tenant: tenant)
                var inbox = bob.deliveries.makeAsyncIterator()
                for index in 0..<5 {
                    let delivery = try await inbox.take()
                    #expect(delivery.text == "m\(index)")
                    delivery.ack()
                }
                #expect(try await alice.get("notes.\(name)").head.version == head.version)
                await alice.close()
                await bob.close()
            }
        }
    }
}
