import Bus
import Foundation
import NIOCore
import Testing

@testable import ACBClient
@testable import Gateway
@testable import Persistence

extension SidecarTests {
    /// LOGIN against secrets that `acb agent create` stored in the real PostgreSQL, and refresh
    /// families kept in the real Redis across a restart of the bus.
    @Suite struct LoginTests {
        static let secret = "correct horse battery staple"

        /// `acb agent create … --secret-stdin`, as an operator runs it.
        static func createAgent(_ agent: String, tenant: String, roles: String) async throws {
            let arguments = [
                "agent", "create", "--agent", agent, "--tenant", tenant, "--roles", roles, "--secret-stdin",
                "--postgres-url", try Sidecars.postgres(),
            ]
            let outcome = try await Command.run(CLITests.acb, arguments, stdin: "\(secret)\n")
            #expect(outcome.status == 0, "\(outcome.output)")
        }

        /// LOGIN then HELLO on one connection.
        static func login(_ bus: TestBus, _ login: Login) async throws -> (RawConnection, Frame?) {
            var raw = try await bus.raw()
            try await raw.send(.login(login))
            return (raw, try await raw.read())
        }

        /// LOGIN and REFRESH read credentials over kept connections, not one new connection each.
        @Test func credentialReadsReuseTheirConnection() throws {
            let tenant = TestBus.freshTenant()
            let store = CredentialStore(url: try Sidecars.postgres())
            let key = AgentKey(tenant: tenant, agentID: "alice")
            for _ in 0..<5 { #expect(try store.credential(of: key) == nil) }
            #expect(store.idleConnections == 1, "five reads, one connection")
            // The kept connection dies while it waits (PostgreSQL restarted, an idle timeout): the
            // next read still succeeds, on a new connection.
            _ = try Sidecars.query(
                """
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                """)
            #expect(try store.credential(of: key) == nil)
            try store.save(CredentialStore.Credential(secretHash: SecretHash.decoy, roles: ["agent-full"]), for: key)
            #expect(try store.credential(of: key)?.roles == ["agent-full"])
            #expect(store.idleConnections == 1)
        }

        @Test func loginGivesTokensThatCarryTheStoredRoles() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.createAgent("alice", tenant: tenant, roles: "agent-producer")
            let stored = try Sidecars.query(
                "SELECT secret_hash FROM agent_credentials WHERE tenant_id = $1 AND agent_id = 'alice'", [tenant])
            #expect(stored.string(0, 0).hasPrefix("$argon2id$") && !stored.string(0, 0).contains(Self.secret))
            try await TestBus.withSidecars(redis: true) { bus in
                var (raw, answer) = try await Self.login(
                    bus, Login(tenant: tenant, agentID: "alice", secret: Self.secret))
                guard case .tokens(let tokens) = answer else {
                    Issue.record("expected TOKENS, got \(String(describing: answer))"); return
                }
                guard case .welcome(let welcome) = try await raw.hello(tokens.accessToken) else {
                    Issue.record("expected WELCOME"); return
                }
                #expect(welcome.agentID == "alice" && welcome.tenant == tenant)
                // agent-producer may send but not subscribe: the roles came from the database.
                try await raw.send(.subscribe(PatternCommand(ref: 1, pattern: "news.>")))
                guard case .error(let denied) = try await raw.read() else { Issue.record("expected ERROR"); return }
                #expect(denied.error.code == .forbidden)
                _ = await bus.audit.first { $0.kind == "security.denied" && $0.agentID == "alice" }
                _ = await bus.audit.first { $0.kind == "security.login" && $0.tenant == tenant }
                await raw.close()
            }
        }

        @Test func theClientLogsInRefreshesAfterADisconnectAndLogsOut() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.createAgent("alice", tenant: tenant, roles: "agent-full")
            try await TestBus.withSidecars(redis: true) { bus in
                var configuration = ClientConfiguration(
                    port: bus.port, credentials: Login(tenant: tenant, agentID: "alice", secret: Self.secret))
                configuration.initialBackoffMs = 20
                let alice = try await ACBClient.connect(configuration)
                #expect(alice.welcome?.agentID == "alice")
                _ = await bus.audit.first { $0.kind == "security.login" && $0.agentID == "alice" }
                // A broken connection: the client comes back with REFRESH, not the secret.
                let cut = try alice.currentConnection()
                alice.dropConnection()
                // The client saw its connection go (the server may see it first: then nextConnection
                // could still hand back the old one), then it is back.
                _ = await bus.audit.first { $0.kind == "session.closed" && $0.agentID == "alice" }
                try await Sidecars.eventually("the client to see the cut") { !cut.isActive }
                _ = try await alice.nextConnection()
                _ = await bus.audit.first { $0.kind == "security.refresh" && $0.agentID == "alice" }
                var inbox = alice.deliveries.makeAsyncIterator()
                #expect(try await alice.send(to: .agent("alice"), ByteBuffer(string: "me")).recipients == 1)
                #expect(try await inbox.take().text == "me")
                try await alice.logout()
                _ = await bus.audit.first { $0.kind == "security.logout" && $0.agentID == "alice" }
            }
        }

        @Test func aWrongSecretAndAnUnknownAgentGetTheSameRefusal() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.createAgent("alice", tenant: tenant, roles: "agent-full")
            try await TestBus.withSidecars { bus in
                for login in [
                    Login(tenant: tenant, agentID: "alice", secret: "not the secret at all"),
                    Login(tenant: tenant, agentID: "nobody", secret: Self.secret),
                    Login(tenant: "other-\(tenant)", agentID: "alice", secret: Self.secret),
                ] {
                    var (raw, answer) = try await Self.login(bus, login)
                    guard case .error(let error) = answer else { Issue.record("expected ERROR"); continue }
                    #expect(
                        error.error.code == .unauthenticated && error.error.message == "unknown agent or wrong secret")
                    #expect(try await raw.read() == nil, "the connection is closed after a failed login")
                }
                _ = await bus.audit.first { $0.kind == "security.login_failed" && $0.detail["agent"] == "nobody" }
                // One address may start only so many LOGINs: then it is told when to retry.
                var refusal: BusError?
                for _ in 0..<200 where refusal == nil {
                    let (raw, answer) = try await Self.login(bus, Login(tenant: tenant, agentID: "x", secret: "guess"))
                    await raw.close()
                    if case .error(let error) = answer, error.error.code == .rateLimited { refusal = error.error }
                }
                #expect(refusal.map { $0.retryAfterMs > 0 } == true)
            }
        }

        @Test func refreshFamiliesSurviveARestartAndReuseIsStillCaught() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.createAgent("alice", tenant: tenant, roles: "agent-full")
            var first: Tokens?
            var second: Tokens?
            try await TestBus.withSidecars(redis: true) { bus in
                let (raw, answer) = try await Self.login(
                    bus, Login(tenant: tenant, agentID: "alice", secret: Self.secret))
                await raw.close()
                guard case .tokens(let tokens) = answer else { Issue.record("expected TOKENS"); return }
                first = tokens
                guard case .tokens(let rotated) = try await TokenTests.refresh(bus, tokens.refreshToken) else {
                    Issue.record("expected TOKENS"); return
                }
                second = rotated
            }
            let (old, current) = (try #require(first), try #require(second))
            // The first bus wrote its Redis queue out as it shut down; the second reads it at start.
            try await TestBus.withSidecars(redis: true) { bus in
                // The token rotated before the restart is recognised as reused; the family dies.
                guard case .error(let reuse) = try await TokenTests.refresh(bus, old.refreshToken) else {
                    Issue.record("reuse accepted after a restart"); return
                }
                #expect(reuse.error.message.contains("already used"))
                guard case .error = try await TokenTests.refresh(bus, current.refreshToken) else {
                    Issue.record("the family outlived the reuse"); return
                }
            }
        }
    }
}
