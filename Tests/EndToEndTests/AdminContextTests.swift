import Bus
import Foundation
import Testing

extension SidecarTests {
    /// Contexts over the admin API (docs/admin-api.md, Contexts) against a running bus with
    /// PostgreSQL: the same contexts, versions, scopes and watches as on the wire.
    @Suite struct AdminContextTests {
        @Test func createdContextsAreReadAndAStaleIfMatchIsAConflict() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                let created = try await alice.post(
                    "/api/v1/contexts",
                    [
                        "id": "plan.q3", "kind": "plan", "body": ["goal": "ship", "steps": ["design"]],
                        "metadata": ["team": "core"],
                    ])
                #expect(created.status == 201, "\(created.text)")
                #expect(created.json["version"] as? Int == 1 && created.json["owner"] as? String == "alice")
                #expect(created.json["content_type"] as? String == "application/json")
                #expect(created.json["scope"] as? String == "private" && created.json["state"] as? String == "live")
                #expect(created.json["expires_ms"] is NSNull && created.json["body"] == nil)
                #expect((created.json["checksum"] as? String)?.count == 64)
                #expect(created.header("ETag") == "\"1\"")

                let twice = try await alice.post("/api/v1/contexts", ["id": "plan.q3", "body": [:] as [String: Any]])
                #expect(twice.status == 409 && twice.code == "version_conflict", "\(twice.text)")
                #expect(twice.json["current_version"] as? Int == 1)

                let read = try await alice.get("/api/v1/contexts/plan.q3")
                #expect(read.status == 200 && read.header("ETag") == "\"1\"")
                #expect((read.json["body"] as? [String: Any])?["goal"] as? String == "ship")
                #expect(try await alice.get("/api/v1/contexts/plan.q3?if_newer_than=1").status == 304)
                // A value that starts with a combining mark (U+0301) still splits at the colon.
                let filtered = try await alice.get("/api/v1/contexts?metadata=team%3A%CC%81core")
                #expect(filtered.status == 200, "\(filtered.text)")
                #expect((filtered.json["contexts"] as? [[String: Any]])?.isEmpty == true)

                let replaced = try await alice.call(
                    "PUT", "/api/v1/contexts/plan.q3", ["body": ["goal": "ship it"]], headers: ["If-Match": "\"1\""])
                #expect(replaced.status == 200 && replaced.json["version"] as? Int == 2, "\(replaced.text)")
                #expect(replaced.header("ETag") == "\"2\"")
                // The attributes the PUT does not name stay as they were.
                #expect(replaced.json["kind"] as? String == "plan")
                #expect(replaced.json["metadata"] as? [String: String] == ["team": "core"])

                let stale = try await alice.call(
                    "PUT", "/api/v1/contexts/plan.q3", ["body": ["goal": "late"]], headers: ["If-Match": "\"1\""])
                #expect(stale.status == 409 && stale.code == "version_conflict", "\(stale.text)")
                #expect(stale.json["current_version"] as? Int == 2)
                let staleQuery = try await alice.put("/api/v1/contexts/plan.q3?expected_version=1", ["body": 0])
                #expect(staleQuery.status == 409 && staleQuery.json["current_version"] as? Int == 2)

                let latest = try await alice.get("/api/v1/contexts/plan.q3")
                #expect((latest.json["body"] as? [String: Any])?["goal"] as? String == "ship it")
                let first = try await alice.get("/api/v1/contexts/plan.q3?version=1")
                #expect((first.json["body"] as? [String: Any])?["goal"] as? String == "ship")
                let history = try await alice.get("/api/v1/contexts/plan.q3/history")
                #expect((history.json["versions"] as? [[String: Any]])?.compactMap { $0["version"] as? Int } == [2, 1])
            }
        }

        @Test func bytesContextsTakeAndGiveBase64() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                let bytes = Data([0, 1, 2, 0xFF])
                let created = try await alice.post(
                    "/api/v1/contexts",
                    ["id": "blob", "content_type": "application/octet-stream", "body": bytes.base64EncodedString()])
                #expect(created.status == 201 && created.json["size"] as? Int == 4, "\(created.text)")
                let read = try await alice.get("/api/v1/contexts/blob")
                #expect(read.json["body"] as? String == bytes.base64EncodedString())
                let notBase64 = try await alice.put(
                    "/api/v1/contexts/blob", ["content_type": "application/octet-stream", "body": ["not": "base64"]])
                #expect(notBase64.status == 400 && notBase64.field == "body", "\(notBase64.text)")
            }
        }

        @Test func mergeAndJSONPatchesApplyAndOneThatFailsChangesNothing() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                let created = try await alice.post("/api/v1/contexts", ["id": "doc", "body": ["a": 1, "b": ["c": 2]]])
                #expect(created.status == 201, "\(created.text)")

                let merged = try await patch(alice, "doc", #"{"b":{"c":null,"d":3}}"#, "application/merge-patch+json")
                #expect(merged.status == 200 && merged.json["version"] as? Int == 2, "\(merged.text)")
                #expect(try await alice.get("/api/v1/contexts/doc").text.contains(#""body":{"a":1,"b":{"d":3}}"#))

                let patched = try await patch(
                    alice, "doc", #"[{"op":"replace","path":"/a","value":5},{"op":"add","path":"/e","value":[1]}]"#,
                    "application/json-patch+json", ifMatch: 2)
                #expect(patched.status == 200 && patched.json["version"] as? Int == 3, "\(patched.text)")
                #expect(
                    try await alice.get("/api/v1/contexts/doc").text.contains(#""body":{"a":5,"b":{"d":3},"e":[1]}"#))

                let failed = try await patch(
                    alice, "doc", #"[{"op":"remove","path":"/e"},{"op":"test","path":"/a","value":99}]"#,
                    "application/json-patch+json")
                #expect(failed.status == 422 && failed.code == "patch_failed", "\(failed.text)")
                let unchanged = try await alice.get("/api/v1/contexts/doc")
                #expect(unchanged.header("ETag") == "\"3\"")
                #expect(unchanged.text.contains(#""body":{"a":5,"b":{"d":3},"e":[1]}"#))

                let notJSON = try await patch(alice, "doc", "{not json", "application/merge-patch+json")
                #expect(notJSON.status == 400 && notJSON.code == "invalid_json", "\(notJSON.text)")
                let badPointer = try await patch(
                    alice, "doc", #"[{"op":"remove","path":"a"}]"#, "application/json-patch+json")
                #expect(badPointer.status == 400 && badPointer.code == "invalid_pointer", "\(badPointer.text)")
                let plainJSON = try await patch(alice, "doc", "{}", "application/json")
                #expect(plainJSON.status == 400 && plainJSON.field == "Content-Type", "\(plainJSON.text)")
                let stale = try await patch(alice, "doc", "{}", "application/merge-patch+json", ifMatch: 1)
                #expect(stale.status == 409 && stale.json["current_version"] as? Int == 3, "\(stale.text)")
            }
        }

        @Test func aDeletedContextIsNotFoundAndAnotherTenantNeverSeesIt() async throws {
            let (tenant, other) = (TestBus.freshTenant(), TestBus.freshTenant())
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                let created = try await alice.post(
                    "/api/v1/contexts", ["id": "notes", "body": ["n": 1], "scope": "tenant"])
                #expect(created.status == 201, "\(created.text)")
                // An agent of the same name in another tenant names another, absent, context.
                let stranger = try await bus.admin("alice", tenant: other, roles: ["agent-full"])
                let foreign = try await stranger.get("/api/v1/contexts/notes")
                #expect(foreign.status == 404 && foreign.code == "unknown_context", "\(foreign.text)")
                #expect(try await stranger.delete("/api/v1/contexts/notes").status == 404)
                #expect(
                    (try await stranger.get("/api/v1/contexts").json["contexts"] as? [[String: Any]])?.isEmpty == true)

                let stale = try await alice.delete("/api/v1/contexts/notes?expected_version=7")
                #expect(stale.status == 409 && stale.json["current_version"] as? Int == 1, "\(stale.text)")
                #expect(try await alice.delete("/api/v1/contexts/notes").status == 204)
                let gone = try await alice.get("/api/v1/contexts/notes")
                #expect(gone.status == 404 && gone.code == "unknown_context", "\(gone.text)")
                // Its history still answers: the tombstone, then the version before it.
                let history = try await alice.get("/api/v1/contexts/notes/history")
                let states = (history.json["versions"] as? [[String: Any]])?.compactMap { $0["state"] as? String }
                #expect(states == ["deleted", "live"], "\(history.text)")
            }
        }

        @Test func scopesAndRolesDecideWhoReadsAndWrites() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                #expect(try await alice.post("/api/v1/contexts", ["id": "secret", "body": ["k": 1]]).status == 201)

                // Outside a private context's scope: refused, and audited by the bus as context.denied.
                let bob = try await bus.admin("bob", tenant: tenant, roles: ["agent-full"])
                let read = try await bob.get("/api/v1/contexts/secret")
                #expect(read.status == 403 && read.code == "forbidden", "\(read.text)")
                let write = try await bob.put("/api/v1/contexts/secret", ["body": ["k": 2]])
                #expect(write.status == 403 && write.code == "forbidden", "\(write.text)")
                _ = await bus.audit.first { $0.kind == "context.denied" && $0.tenant == tenant && $0.agentID == "bob" }
                #expect((try await bob.get("/api/v1/contexts").json["contexts"] as? [[String: Any]])?.isEmpty == true)

                // An observer reads every context of its tenant and writes none (a role refusal).
                let observer = try await bus.admin("auditor", tenant: tenant, roles: ["observer"])
                #expect(try await observer.get("/api/v1/contexts/secret").status == 200)
                let refused = try await observer.post("/api/v1/contexts", ["id": "mine", "body": 1])
                #expect(refused.status == 403 && refused.code == "forbidden", "\(refused.text)")
                _ = await bus.audit.first { $0.kind == "security.denied" && $0.agentID == "auditor" }

                // An admin of another tenant reads and writes there, as tenant:agent.
                let root = try await bus.admin()
                #expect(try await root.get("/api/v1/contexts/secret?tenant=\(tenant)").status == 200)
                let made = try await root.post("/api/v1/contexts?tenant=\(tenant)", ["id": "ops.note", "body": "hi"])
                #expect(made.status == 201 && made.json["owner"] as? String == "ops:root", "\(made.text)")
                // The owner shares it; bob then reads it.
                let shared = try await alice.put(
                    "/api/v1/contexts/secret", ["body": ["k": 3], "scope": "shared", "readers": ["bob"]])
                #expect(shared.status == 200, "\(shared.text)")
                #expect(try await bob.get("/api/v1/contexts/secret").status == 200)
            }
        }

        @Test func aWatchStreamsChangesMadeOverHTTPAndTheWireAndResumesAfterLastEventID() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                let token = try #require(alice.token)
                #expect(try await alice.post("/api/v1/contexts", ["id": "doc", "body": ["n": 1]]).status == 201)

                var stream = try await EventStreamConnection.open(
                    port: alice.port, path: "/api/v1/contexts/doc/watch", token: token)
                #expect(stream.status == 200 && stream.headers["content-type"] == "text/event-stream")
                // One change over HTTP, one on the wire (the same agent, on a connection of its own).
                #expect(try await alice.put("/api/v1/contexts/doc", ["body": ["n": 2]]).status == 200)
                var wire = try await ContextPeer.connect(bus, "alice", tenant: tenant)
                _ = try await wire.write(.update, "doc", body: #"{"n":3}"#).get()

                let second = try await stream.next()
                #expect(second?.id == "2" && second?.event == "updated", "\(String(describing: second))")
                #expect((second?.json["body"] as? [String: Any])?["n"] as? Int == 2)
                let third = try await stream.next()
                #expect(third?.id == "3" && third?.json["version"] as? Int == 3, "\(String(describing: third))")
                #expect((third?.json["body"] as? [String: Any])?["n"] as? Int == 3)
                await stream.close()

                // Changes while nobody watches; resuming after version 2 gets 3 and 4, nothing before.
                _ = try await wire.write(.update, "doc", body: #"{"n":4}"#).get()
                var resumed = try await EventStreamConnection.open(
                    port: alice.port, path: "/api/v1/contexts/doc/watch?snapshot=true", token: token,
                    headers: ["Last-Event-ID": "2"])
                #expect(resumed.status == 200)
                let replayed = try await resumed.next()
                #expect(replayed?.id == "3", "\(String(describing: replayed))")
                let fourth = try await resumed.next()
                #expect(fourth?.id == "4" && fourth?.event == "updated", "\(String(describing: fourth))")
                #expect(try await alice.delete("/api/v1/contexts/doc").status == 204)
                let tombstone = try await resumed.next()
                #expect(tombstone?.id == "5" && tombstone?.event == "deleted", "\(String(describing: tombstone))")
                #expect(tombstone?.json["state"] as? String == "deleted" && tombstone?.json["body"] == nil)
                await resumed.close()
                await wire.close()
            }
        }

        @Test func aPatternWatchCountsInRevisionsAndStartsWithASnapshot() async throws {
            let tenant = TestBus.freshTenant()
            try await AdminAPITests.withAdmin { bus in
                let alice = try await bus.admin("alice", tenant: tenant, roles: ["agent-full"])
                let token = try #require(alice.token)
                let first = try await alice.post("/api/v1/contexts", ["id": "plans.a", "body": ["n": 1]])
                let revision = try #require(first.json["revision"] as? Int)

                var stream = try await EventStreamConnection.open(
                    port: alice.port, path: "/api/v1/contexts/plans.%3E/watch?snapshot=true", token: token)
                #expect(stream.status == 200)
                let snapshot = try await stream.next()
                #expect(
                    snapshot?.event == "snapshot" && snapshot?.id == "\(revision)", "\(String(describing: snapshot))")
                #expect(snapshot?.json["id"] as? String == "plans.a")

                #expect(try await alice.post("/api/v1/contexts", ["id": "other.x", "body": 0]).status == 201)
                let second = try await alice.post("/api/v1/contexts", ["id": "plans.b", "body": ["n": 2]])
                let created = try await stream.next()
                #expect(created?.event == "created" && created?.json["id"] as? String == "plans.b")
                #expect(created?.id == "\(revision + 2)" && second.json["revision"] as? Int == revision + 2)
                await stream.close()

                // A position the tenant never reached is refused before any event.
                let beyond = try await EventStreamConnection.open(
                    port: alice.port, path: "/api/v1/contexts/plans.*/watch?after=999", token: token)
                #expect(beyond.status == 400 && beyond.json["field"] as? String == "after", "\(beyond.json)")
                await beyond.close()
            }
        }

        /// A PATCH with `body` as its raw text, of media type `type`.
        private func patch(
            _ client: AdminClient, _ id: String, _ body: String, _ type: String, ifMatch: Int? = nil
        ) async throws -> AdminClient.Reply {
            var headers = ["Content-Type": type]
            if let ifMatch { headers["If-Match"] = "\"\(ifMatch)\"" }
            return try await client.call("PATCH", "/api/v1/contexts/\(id)", body, headers: headers)
        }
    }
}
