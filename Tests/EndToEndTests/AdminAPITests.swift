import ACBClient
import ACBTLS
import Actors
import Bus
import Foundation
import NIOCore
import Testing

@testable import Gateway

extension SidecarTests {
    /// The admin API over real HTTP, as a whole: health, metrics, tokens, errors, limits, CORS.
    @Suite struct AdminAPITests {
        /// A bus with PostgreSQL, Redis (and the broker, whose audit events then skip `bus.audit`)
        /// and the admin API on a free port.
        static func withAdmin(
            kafka: Bool = false, tls: TLSConfiguration? = nil,
            _ configure: @escaping (inout AdminConfiguration) -> Void = { _ in },
            _ body: (TestBus) async throws -> Void
        ) async throws {
            try await TestBus.withSidecars(
                redis: true, kafka: kafka,
                {
                    var admin = AdminConfiguration()
                    admin.port = 0
                    configure(&admin)
                    $0.admin = admin
                    $0.tls = tls
                }, body)
        }

        @Test func healthReadinessAndMetricsNeedNoToken() async throws {
            try await Self.withAdmin(kafka: true) { bus in
                let http = try await bus.admin(nil)
                let health = try await http.get("/healthz")
                #expect(health.status == 200 && health.json["status"] as? String == "ok")
                // The sidecars' writers connect on threads of their own, soon after the start.
                try await Sidecars.eventually("readiness") { try await http.get("/readyz").status == 200 }
                let ready = try await http.get("/readyz")
                #expect(ready.json["status"] as? String == "ready")
                for sidecar in ["postgres", "redis", "kafka"] {
                    #expect((ready.json[sidecar] as? [String: Any])?["up"] as? Bool == true, "\(sidecar)")
                }
                // Traffic on the wire shows in the counters.
                let tenant = TestBus.freshTenant()
                let alice = try await bus.client("alice", tenant: tenant)
                let bob = try await bus.client("bob", tenant: tenant)
                _ = try await alice.send(to: .agent("bob"), ByteBuffer(string: "hi"))
                await expectBusError(.unknownAgent) { _ = try await alice.send(to: .agent("nobody"), ByteBuffer()) }
                let metrics = try await http.get("/metrics")
                // Delivered, or stored if it came while bob's session was still reading its backlog.
                #expect(
                    ["delivered", "queued"].contains {
                        metrics.text.contains("acb_messages_routed_total{kind=\"direct\",outcome=\"\($0)\"} 1")
                    })
                #expect(metrics.status == 200 && metrics.header("Content-Type")?.hasPrefix("text/plain") == true)
                for line in [
                    "acb_messages_routed_total{kind=\"direct\",outcome=\"failed\"} 1",
                    "acb_rejected_frames_total{code=\"unknown_agent\"} 1", "acb_agents_online 2.0",
                    "acb_connections 2.0", "acb_sidecar_up{sidecar=\"postgres\"} 1.0",
                    "acb_queue_depth{queue=\"mailboxes\"}", "acb_sidecar_spool_bytes{sidecar=\"kafka\"}",
                    "acb_sidecar_batches_total{sidecar=\"redis\"}", "acb_request_duration_seconds_bucket",
                    "acb_admin_request_duration_seconds_bucket{method=\"GET\",route=\"/readyz\",status=\"200\"",
                ] {
                    #expect(metrics.text.contains(line), "\(line)")
                }
                await alice.close()
                await bob.close()
            }
        }

        @Test func everyResponseCarriesARequestIDAndErrorsOneShape() async throws {
            try await Self.withAdmin { bus in
                let http = try await bus.admin(nil)
                #expect(
                    try await http.get("/healthz", headers: ["X-Request-ID": "abc-123"]).header("X-Request-ID")
                        == "abc-123")
                let replaced = try await http.get("/healthz", headers: ["X-Request-ID": "no spaces allowed"])
                #expect(replaced.header("X-Request-ID")?.count == 36)
                let refused = try await http.get("/api/v1/agents")
                #expect(refused.status == 401 && refused.code == "unauthenticated")
                #expect(refused.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
                #expect(refused.json["request_id"] as? String == refused.header("X-Request-ID"))
                #expect((refused.json["timestamp"] as? String).flatMap { try? Date($0, strategy: .iso8601) } != nil)
                #expect(refused.json["message"] is String)
                let forged = try await http.with(token: "not.a.token").get("/api/v1/agents")
                #expect(forged.status == 401 && forged.code == "unauthenticated")
                // A header naming another algorithm over a good HS256 signature: refused here too.
                let admin = try await bus.token("root", tenant: "ops", roles: ["admin"])
                let none = TokenTests.resigned(admin, header: #"{"alg":"none"}"#, secret: TestBus.secret)
                let unsigned = try await http.with(token: none).get("/api/v1/agents")
                #expect(unsigned.status == 401, "\(unsigned.text)")
                #expect((unsigned.json["message"] as? String)?.contains("(algorithm)") == true, "\(unsigned.text)")
                let nowhere = try await http.get("/api/v1/nothing-here")
                #expect(nowhere.status == 404 && nowhere.code == "not_found")
                let wrongMethod = try await http.delete("/readyz")
                #expect(wrongMethod.status == 405 && wrongMethod.code == "method_not_allowed")
                #expect(wrongMethod.header("Allow") == "GET")
            }
        }

        @Test func badInputIsRefusedNamingTheField() async throws {
            try await Self.withAdmin({ $0.maxBodyBytes = 1024 }) { bus in
                let http = try await bus.admin()
                let cases: [(Any, String, String)] = [
                    ("{not json", "body", "invalid_argument"), ("[1]", "body", "invalid_argument"),
                    (["type": "worker", "colour": "red"], "colour", "invalid_argument"),
                    (["type": 7], "type", "invalid_argument"), (["capabilities": ["x"]], "type", "invalid_argument"),
                    (["type": "worker", "location": NSNull()], "location", "invalid_argument"),
                    (["type": "worker", "capabilities": ["has space"]], "capabilities", "invalid_argument"),
                    (["type": "worker", "metadata": ["k": 1]], "metadata.k", "invalid_argument"),
                    (["type": String(repeating: "x", count: 2000)], "body", "too_large"),
                ]
                for (body, field, code) in cases {
                    let reply = try await http.put("/api/v1/agents/bob", body)
                    #expect(reply.status == 400 && reply.field == field && reply.code == code, "\(body): \(reply.text)")
                }
                for (query, field) in [
                    ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=257", "limit"), ("status=gone", "status"),
                    ("colour=red", "colour"), ("cursor=a%20b", "cursor"), ("limit=1&limit=2", "limit"),
                ] {
                    let reply = try await http.get("/api/v1/agents?\(query)")
                    #expect(reply.status == 400 && reply.field == field, "\(query): \(reply.text)")
                }
                let cursor = try await http.get("/api/v1/dead-letters?cursor=-1")
                #expect(cursor.status == 400 && cursor.field == "cursor")
                let id = try await http.get("/api/v1/messages/12x")
                #expect(id.status == 400 && id.field == "message_id")
            }
        }

        /// Identifiers may hold `#`, `%`, `?`: a path carries them percent-encoded, and the API decodes
        /// them (RFC 3986). In query strings `+` is a plus, not a space (docs/admin-api.md).
        @Test func pathParametersArePercentDecodedAndPlusIsLiteralInQueries() async throws {
            try await Self.withAdmin { bus in
                let tenant = TestBus.freshTenant()
                let http = try await bus.admin()
                for (path, agent) in [("pct%41gent", "pctAgent"), ("hash%23agent", "hash#agent"), ("q%3F%25", "q?%")] {
                    let put = try await http.put("/api/v1/agents/\(path)?tenant=\(tenant)", ["type": "a+b"])
                    #expect(put.status == 201 && put.json["agent_id"] as? String == agent, "\(path): \(put.text)")
                    let get = try await http.get("/api/v1/agents/\(path)?tenant=\(tenant)")
                    #expect(get.status == 200 && get.json["agent_id"] as? String == agent, "\(path): \(get.text)")
                }
                for query in ["a+b", "a%2Bb"] {
                    let list = try await http.get("/api/v1/agents?tenant=\(tenant)&type=\(query)")
                    #expect(list.status == 200 && list.items.count == 3, "\(query): \(list.text)")
                }
                // Were `+` a space, this would be the same query; a space is no identifier.
                let space = try await http.get("/api/v1/agents?tenant=\(tenant)&type=a%20b")
                #expect(space.status == 400 && space.field == "type", "\(space.text)")
            }
        }

        /// URLSession re-encodes a stray `%`, so the decoder's refusals are checked directly.
        @Test(arguments: [
            ("a%41", "aA"), ("%C3%A9t%C3%A9", "été"), ("100%25", "100%"), ("a%zz", nil), ("a%4", nil), ("%+f", nil),
            ("%FF", nil),
        ])
        func percentDecodingIsStrict(encoded: String, decoded: String?) {
            #expect(AdminCheck.percentDecoded(encoded) == decoded)
        }

        @Test func loginRefreshAndLogoutOverHTTP() async throws {
            let tenant = TestBus.freshTenant()
            try await LoginTests.createAgent("alice", tenant: tenant, roles: "agent-full")
            try await Self.withAdmin { bus in
                let http = try await bus.admin(nil)
                let wrong = try await http.post(
                    "/api/v1/auth/login", ["tenant": tenant, "agent_id": "alice", "secret": "wrong"])
                #expect(wrong.status == 401 && wrong.code == "unauthenticated")
                let login = try await http.post(
                    "/api/v1/auth/login", ["tenant": tenant, "agent_id": "alice", "secret": LoginTests.secret])
                #expect(login.status == 200 && login.json["token_type"] as? String == "Bearer")
                let access = try #require(login.json["access_token"] as? String)
                let refresh = try #require(login.json["refresh_token"] as? String)
                #expect(try await http.with(token: access).get("/api/v1/agents").status == 200)
                let rotated = try await http.post("/api/v1/auth/refresh", ["refresh_token": refresh])
                #expect(rotated.status == 200 && rotated.json["expires_in"] as? Int == 3600)
                // The old refresh token again: reuse, the family is revoked.
                let reused = try await http.post("/api/v1/auth/refresh", ["refresh_token": refresh])
                #expect(reused.status == 401 && reused.field == "refresh_token")
                let fresh = try await http.post(
                    "/api/v1/auth/login", ["tenant": tenant, "agent_id": "alice", "secret": LoginTests.secret])
                let token = try #require(fresh.json["access_token"] as? String)
                #expect(try await http.with(token: token).post("/api/v1/auth/logout").status == 204)
                let after = try await http.with(token: token).get("/api/v1/agents")
                #expect(after.status == 401 && after.code == "unauthenticated")
                _ = await bus.audit.first { $0.kind == "security.logout" && $0.tenant == tenant }
            }
        }

        @Test func loginOverHTTPIsRefusedWhenAgentsMustShowCertificates() async throws {
            var tls = TLSEndToEndTests.serverTLS
            tls.clientAuthentication = .required
            let tenant = TestBus.freshTenant()
            try await LoginTests.createAgent("alice", tenant: tenant, roles: "agent-full")
            try await Self.withAdmin(tls: tls) { bus in
                let login = try await bus.admin(nil).post(
                    "/api/v1/auth/login", ["tenant": tenant, "agent_id": "alice", "secret": LoginTests.secret])
                #expect(
                    login.status == 401
                        && login.json["message"] as? String
                            == "this bus requires client certificates: log in and refresh on the agent port"
                )
            }
        }

        @Test func tooManyRequestsFromOneAddressGet429WithRetryAfter() async throws {
            try await Self.withAdmin({ ($0.requestsPerSecond, $0.requestBurst) = (0.5, 3) }) { bus in
                let http = try await bus.admin(nil)
                for _ in 1...3 { #expect(try await http.get("/healthz").status == 200) }
                let limited = try await http.get("/healthz")
                #expect(limited.status == 429 && limited.code == "rate_limited")
                #expect(Int(limited.header("Retry-After") ?? "") ?? 0 >= 1)
                #expect(limited.json["retry_after_ms"] as? Int ?? 0 > 0)
            }
        }

        @Test func corsAnswersAllowedOriginsOnlyOnSuccessAndError() async throws {
            try await Self.withAdmin({ $0.corsOrigins = ["https://ops.example.com"] }) { bus in
                let http = try await bus.admin(nil)
                let allowed = ["Origin": "https://ops.example.com"]
                #expect(
                    try await http.get("/healthz", headers: allowed).header("Access-Control-Allow-Origin")
                        == "https://ops.example.com")
                let error = try await http.get("/api/v1/agents", headers: allowed)
                #expect(error.status == 401 && error.header("Access-Control-Allow-Origin") == "https://ops.example.com")
                #expect(error.header("Access-Control-Expose-Headers")?.contains("X-Request-ID") == true)
                let preflight = try await http.call(
                    "OPTIONS", "/api/v1/agents",
                    headers: allowed.merging(["Access-Control-Request-Method": "PUT"]) { $1 })
                #expect(
                    preflight.status == 204 && preflight.header("Access-Control-Allow-Methods")?.contains("PUT") == true
                )
                #expect(preflight.header("X-Request-ID") != nil)
                let other = try await http.get("/healthz", headers: ["Origin": "https://evil.example.com"])
                #expect(other.header("Access-Control-Allow-Origin") == nil)
            }
        }

        @Test func theAdminPortClosesWithTheBus() async throws {
            var port = 0
            try await Self.withAdmin { bus in
                port = try await #require(bus.server.admin).port()
                #expect(try await AdminClient(port: port).get("/healthz").status == 200)
            }
            do {
                _ = try await AdminClient(port: port).get("/healthz")
                Issue.record("the admin port still answers")
            } catch let error as URLError {
                #expect(error.code == .cannotConnectToHost, "\(error)")
            }
        }

        @Test func theDocumentAndItsPageAreServed() async throws {
            try await Self.withAdmin { bus in
                let http = try await bus.admin(nil)
                let document = try await http.get("/api/v1/openapi.yaml")
                let inRepository = try String(
                    contentsOfFile: "\(Sidecars.root)/Sources/Gateway/Admin/openapi.yaml", encoding: .utf8)
                #expect(document.status == 200 && document.text == inRepository)
                let page = try await http.get("/api/v1/docs")
                #expect(page.status == 200 && page.header("Content-Type")?.hasPrefix("text/html") == true)
                for operation in ["listAgents", "sendMessage", "replayDeadLetters", "tenantCounters"] {
                    #expect(page.text.contains("id=\"\(operation)\""), "\(operation)")
                }
            }
        }
    }
}
