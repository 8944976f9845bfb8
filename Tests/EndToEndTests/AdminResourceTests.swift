import ACBClient
import Actors
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

extension SidecarTests {
    /// Each resource of the admin API over real HTTP against a running bus: agents, messages,
    /// dead letters, uploads, tenants, and what each role may do with them.
    @Suite struct AdminResourceTests {
        @Test func agentsAreRegisteredListedFilteredAndUnregistered() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let http = try await bus.admin()
                let bob = try await http.put(
                    "/api/v1/agents/bob?tenant=\(tenant)",
                    ["type": "worker", "capabilities": ["summarise"], "metadata": ["zone": "eu"], "location": "rack-1"])
                #expect(bob.status == 201 && bob.json["status"] as? String == "offline")
                #expect((bob.json["metadata"] as? [String: String]) == ["zone": "eu"])
                #expect(try await http.put("/api/v1/agents/bob?tenant=\(tenant)", ["type": "worker"]).status == 200)
                #expect(
                    try await http.put(
                        "/api/v1/agents/carol?tenant=\(tenant)", ["type": "critic", "capabilities": ["review"]]
                    ).status == 201)
                let carolOnline = try await bus.client("carol", tenant: tenant)
                let all = try await http.get("/api/v1/agents?tenant=\(tenant)")
                #expect(all.items.compactMap { $0["agent_id"] as? String } == ["bob", "carol"])
                let online = try await http.get("/api/v1/agents?tenant=\(tenant)&status=online")
                #expect(online.items.compactMap { $0["agent_id"] as? String } == ["carol"])
                let reviewers = try await http.get("/api/v1/agents?tenant=\(tenant)&capability=review")
                #expect(reviewers.items.count == 1 && reviewers.items.first?["type"] as? String == "critic")
                let workers = try await http.get("/api/v1/agents?tenant=\(tenant)&type=worker")
                #expect(workers.items.compactMap { $0["agent_id"] as? String } == ["bob"])
                let first = try await http.get("/api/v1/agents?tenant=\(tenant)&limit=1")
                #expect(first.items.count == 1 && first.json["next_cursor"] as? String == "bob")
                let second = try await http.get("/api/v1/agents?tenant=\(tenant)&limit=1&cursor=bob")
                #expect(second.items.first?["agent_id"] as? String == "carol" && second.json["next_cursor"] == nil)
                let carol = try await http.get("/api/v1/agents/carol?tenant=\(tenant)")
                #expect(carol.json["status"] as? String == "online" && carol.json["readiness"] as? String == "ready")
                #expect(try await http.delete("/api/v1/agents/bob?tenant=\(tenant)").status == 204)
                let gone = try await http.get("/api/v1/agents/bob?tenant=\(tenant)")
                #expect(gone.status == 404 && gone.code == "unknown_agent")
                #expect(try await http.delete("/api/v1/agents/bob?tenant=\(tenant)").code == "unknown_agent")
                // The wire sees what the API did.
                #expect(try await carolOnline.discover().agents.map(\.agentID) == ["carol"])
                _ = await bus.audit.first { $0.kind == "agent.unregistered" && $0.detail["by"] == "ops/root" }
                await carolOnline.close()
            }
        }

        @Test func aLiveSessionIsDisconnected() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let http = try await bus.admin()
                var raw = try await bus.raw()
                _ = try await raw.hello(try await bus.token("dave", tenant: tenant))
                #expect(try await http.post("/api/v1/agents/dave/disconnect?tenant=\(tenant)").status == 204)
                guard case .goAway(let goAway) = try await raw.read() else { Issue.record("no GOAWAY"); return }
                #expect(goAway.code == .replaced && goAway.message.contains("ops/root"))
                try await Sidecars.eventually("dave offline") {
                    bus.server.supervisor.routing.session(for: AgentKey(tenant: tenant, agentID: "dave")) == nil
                }
                #expect(
                    try await http.post("/api/v1/agents/nobody/disconnect?tenant=\(tenant)").code == "unknown_agent")
                _ = try await http.put("/api/v1/agents/erin?tenant=\(tenant)", ["type": "worker"])
                let offline = try await http.post("/api/v1/agents/erin/disconnect?tenant=\(tenant)")
                #expect(offline.status == 409 && offline.code == "offline")
                await raw.close()
            }
        }

        @Test func aMessageSentOverHTTPIsStoredDeliveredAndFollowedToAcked() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let http = try await bus.admin()
                _ = try await http.put("/api/v1/agents/bob?tenant=\(tenant)", ["type": "worker"])
                let sent = try await http.post(
                    "/api/v1/messages", ["tenant": tenant, "from": "ops-console", "to": "bob", "payload": "hello"])
                #expect(sent.status == 202 && sent.json["status"] as? String == "queued")
                let id = try #require(sent.json["id"] as? String)
                let queued = try await http.get("/api/v1/messages/\(id)")
                #expect(queued.json["status"] as? String == "queued" && queued.json["from"] as? String == "ops-console")
                let bob = try await bus.client("bob", tenant: tenant)
                var deliveries = bob.deliveries.makeAsyncIterator()
                let delivery = try await deliveries.take()
                #expect(delivery.text == "hello" && delivery.from == "ops-console")
                delivery.ack()
                try await Sidecars.eventually("the message acknowledged") {
                    try await http.get("/api/v1/messages/\(id)").json["status"] as? String == "acked"
                }
                // Bob sends as himself; sending as anyone else, or to nobody, is refused.
                let asBob = try await bus.admin("bob", tenant: tenant, roles: ["agent-producer"])
                _ = try await http.put("/api/v1/agents/carol?tenant=\(tenant)", ["type": "worker"])
                let own = try await asBob.post("/api/v1/messages", ["to": "carol", "payload_base64": "AAEC"])
                #expect(own.status == 202)
                let ownID = try #require(own.json["id"] as? String)
                #expect(try await asBob.get("/api/v1/messages/\(ownID)").json["from"] as? String == "bob")
                #expect(
                    try await asBob.post("/api/v1/messages", ["to": "carol", "from": "carol", "payload": "x"]).status
                        == 403)
                let nobody = try await http.post(
                    "/api/v1/messages", ["tenant": tenant, "to": "nobody", "payload": "x"])
                #expect(nobody.status == 404 && nobody.code == "unknown_agent" && nobody.field == "to")
                let both = try await http.post(
                    "/api/v1/messages", ["tenant": tenant, "to": "bob", "payload": "x", "payload_base64": "eA=="])
                #expect(both.status == 400 && both.field == "payload")
                #expect(try await http.get("/api/v1/messages/999999999").code == "not_found")
                await bob.close()
            }
        }

        @Test func deadLettersAreListedReplayedAndPurged() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin({ _ in }) { bus in
                let http = try await bus.admin()
                _ = try await http.put("/api/v1/agents/bob?tenant=\(tenant)", ["type": "worker"])
                var bob = try await bus.raw()
                _ = try await bob.hello(try await bus.token("bob", tenant: tenant))
                for text in ["one", "two", "three"] {
                    _ = try await http.post("/api/v1/messages", ["tenant": tenant, "to": "bob", "payload": text])
                }
                // Bob refuses every attempt of each: each is dead-lettered as `rejected`.
                var rejected = 0
                while rejected < 3, case .deliver(let delivery) = try await bob.read() {
                    try await bob.send(.nack(Ack(deliveryID: delivery.deliveryID)))
                    if delivery.attempt == bus.server.supervisor.configuration.maxDeliveryAttempts { rejected += 1 }
                }
                await bob.close()
                try await Sidecars.eventually("three dead letters") {
                    try await http.get("/api/v1/dead-letters?tenant=\(tenant)").items.count == 3
                }
                let page = try await http.get("/api/v1/dead-letters?tenant=\(tenant)&limit=2")
                #expect(
                    page.items.count == 2 && page.json["next_cursor"] as? String == page.items.last?["id"] as? String)
                #expect(page.items.allSatisfy { $0["reason"] as? String == "rejected" && $0["to"] as? String == "bob" })
                #expect(page.items.allSatisfy { $0["payload_bytes"] as? Int == 3 && $0["payload_base64"] == nil })
                let one = try await http.get(
                    "/api/v1/dead-letters/\(page.items.first?["id"] as? String ?? "")?tenant=\(tenant)")
                #expect(one.json["payload_base64"] as? String == Data("one".utf8).base64EncodedString())
                let rest = try await http.get(
                    "/api/v1/dead-letters?tenant=\(tenant)&cursor=\(page.json["next_cursor"] as? String ?? "")")
                #expect(rest.items.count == 1 && rest.json["next_cursor"] == nil)
                // Bob's own token sees his dead letters; an observer of another tenant does not.
                let asBob = try await bus.admin("bob", tenant: tenant, roles: ["agent-consumer"])
                #expect(try await asBob.get("/api/v1/dead-letters").items.count == 3)
                #expect(try await asBob.get("/api/v1/dead-letters?agent=carol").status == 403)
                #expect(try await asBob.post("/api/v1/dead-letters/purge", ["all": true]).status == 403)
                let asCarol = try await bus.admin("carol", tenant: tenant, roles: ["agent-full"])
                #expect(
                    try await asCarol.get("/api/v1/dead-letters/\(page.items.first?["id"] as? String ?? "")").code
                        == "not_found")
                let first = try #require(page.items.first?["id"] as? String)
                let replay = try await http.post(
                    "/api/v1/dead-letters/replay", ["tenant": tenant, "ids": [first, "123", first]])
                #expect(replay.status == 200 && (replay.json["not_found"] as? [String]) == ["123"])
                let replayed = try #require((replay.json["replayed"] as? [[String: Any]])?.first)
                #expect(replayed["dead_letter_id"] as? String == first)
                let message = try await http.get("/api/v1/messages/\(replayed["message_id"] as? String ?? "")")
                #expect(message.json["status"] as? String == "queued" && message.json["to"] as? String == "bob")
                #expect(try await http.get("/api/v1/dead-letters?tenant=\(tenant)").items.count == 2)
                // A dead letter whose receiver left the registry is not replayed, and stays.
                _ = try await http.delete("/api/v1/agents/bob?tenant=\(tenant)")
                let second = try #require(page.items.last?["id"] as? String)
                let orphan = try await http.post("/api/v1/dead-letters/replay", ["tenant": tenant, "ids": [second]])
                #expect((orphan.json["failed"] as? [[String: Any]])?.first?["code"] as? String == "unknown_agent")
                #expect(try await http.get("/api/v1/dead-letters?tenant=\(tenant)").items.count == 2)
                let bad = try await http.post(
                    "/api/v1/dead-letters/purge", ["tenant": tenant, "all": true, "agent": "bob"])
                #expect(bad.status == 400 && bad.field == "ids")
                let purged = try await http.post("/api/v1/dead-letters/purge", ["tenant": tenant, "all": true])
                #expect(purged.json["purged"] as? Int == 2)
                #expect(try await http.get("/api/v1/dead-letters?tenant=\(tenant)").items.isEmpty)
                _ = await bus.audit.first { $0.kind == "dead_letters.purged" && $0.tenant == tenant }
            }
        }

        @Test func anUploadInProgressShowsHowFarItIsStored() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.client("alice", tenant: tenant)
                let bob = try await bus.client("bob", tenant: tenant)
                try await alice.upload(
                    to: .agent("bob"), from: BufferSource(ByteBuffer(repeating: 1, count: 3 << 20)), streamID: "s-1")
                let asAlice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                try await Sidecars.eventually("the progress in Redis") {
                    try await asAlice.get("/api/v1/streams/s-1").json["chunks"] as? Int == 3
                }
                let upload = try await asAlice.get("/api/v1/streams/s-1")
                #expect(upload.json["total"] as? Int == 3 << 20 && upload.json["agent_id"] as? String == "alice")
                let admin = try await bus.admin()
                #expect(try await admin.get("/api/v1/streams/s-1?tenant=\(tenant)&agent=alice").status == 200)
                #expect(try await asAlice.get("/api/v1/streams/s-2").code == "unknown_stream")
                let asBob = try await bus.admin("bob", tenant: tenant, roles: ["agent-full"])
                #expect(try await asBob.get("/api/v1/streams/s-1?agent=alice").status == 403)
                await alice.close()
                await bob.close()
            }
        }

        @Test func tenantsAreDeclaredListedAndCounted() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let http = try await bus.admin()
                let created = try await http.post("/api/v1/tenants", ["id": tenant, "name": "Acme Corp"])
                #expect(created.status == 201 && created.json["name"] as? String == "Acme Corp")
                let again = try await http.post("/api/v1/tenants", ["id": tenant])
                #expect(again.status == 409 && again.code == "conflict" && again.field == "id")
                let listed = try await http.get("/api/v1/tenants?cursor=\(tenant.dropLast())&limit=256")
                #expect(listed.items.contains { $0["id"] as? String == tenant && $0["created_at"] is String })
                _ = try await http.put("/api/v1/agents/bob?tenant=\(tenant)", ["type": "worker"])
                _ = try await http.post("/api/v1/messages", ["tenant": tenant, "to": "bob", "payload": "x"])
                let counters = try await http.get("/api/v1/tenants/\(tenant)/counters")
                #expect(counters.json["agents_registered"] as? Int == 1 && counters.json["agents_online"] as? Int == 0)
                #expect((counters.json["messages"] as? [String: Int])?["queued"] == 1)
                #expect(counters.json["dead_letters"] as? Int == 0)
                let observer = try await bus.admin("eve", tenant: tenant, roles: ["observer"])
                #expect(try await observer.get("/api/v1/tenants/\(tenant)/counters").status == 200)
                #expect(try await observer.get("/api/v1/tenants/ops/counters").status == 403)
                #expect(try await observer.get("/api/v1/tenants").status == 403)
            }
        }

        @Test func rolesDecideWhatEachTokenMayDo() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let admin = try await bus.admin()
                _ = try await admin.put("/api/v1/agents/bob?tenant=\(tenant)", ["type": "worker"])
                let observer = try await bus.admin("eve", tenant: tenant, roles: ["observer"])
                #expect(try await observer.get("/api/v1/agents").items.count == 1)
                #expect(try await observer.put("/api/v1/agents/eve", ["type": "x"]).status == 403)
                #expect(try await observer.delete("/api/v1/agents/bob").status == 403)
                let agent = try await bus.admin("carol", tenant: tenant, roles: ["agent-consumer"])
                #expect(try await agent.put("/api/v1/agents/carol", ["type": "critic"]).status == 201)
                #expect(try await agent.put("/api/v1/agents/bob", ["type": "critic"]).status == 403)
                #expect(try await agent.get("/api/v1/agents/bob").status == 200)
                #expect(try await agent.get("/api/v1/agents?tenant=ops").status == 403)
                // agent-consumer may not SEND on the wire, so not over HTTP either.
                #expect(try await agent.post("/api/v1/messages", ["to": "bob", "payload": "x"]).status == 403)
                #expect(try await agent.post("/api/v1/dead-letters/replay", ["ids": ["1"]]).status == 403)
                // A token without a known role may do nothing, as on the wire.
                let roleless = try await bus.admin("dan", tenant: tenant, roles: ["poet"])
                #expect(try await roleless.get("/api/v1/agents").status == 403)
                _ = await bus.audit.first { $0.kind == "security.denied" && $0.agentID == "dan" }
                // But any token may log itself out, as any session may on the wire.
                #expect(try await roleless.post("/api/v1/auth/logout").status == 204)
                // Another tenant's message is not found, not forbidden: its existence is not theirs to learn.
                let sent = try await admin.post(
                    "/api/v1/messages", ["tenant": tenant, "from": "x", "to": "bob", "payload": "p"])
                let stranger = try await bus.admin("mallory", tenant: TestBus.freshTenant(), roles: ["agent-full"])
                #expect(
                    try await stranger.get("/api/v1/messages/\(sent.json["id"] as? String ?? "")").code == "not_found")
                // An admin sending in another tenant without naming the sender sends as `tenant:agent`.
                let unnamed = try await admin.post("/api/v1/messages", ["tenant": tenant, "to": "bob", "payload": "p"])
                let unnamedID = try #require(unnamed.json["id"] as? String)
                #expect(try await admin.get("/api/v1/messages/\(unnamedID)").json["from"] as? String == "ops:root")
                #expect(
                    try await admin.post(
                        "/api/v1/messages?x=1", ["tenant": tenant, "from": "x", "to": "bob", "payload": "p"]
                    ).field == "x")
                let denied = try await agent.post("/api/v1/tenants", ["id": "mine"])
                #expect(denied.status == 403 && denied.code == "forbidden")
                _ = await bus.audit.first {
                    $0.kind == "security.denied" && $0.agentID == "carol"
                        && $0.detail["operation"] == "POST /api/v1/tenants"
                }
            }
        }
    }
}
