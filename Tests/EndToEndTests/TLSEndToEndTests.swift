import ACBClient
import ACBTLS
import Actors
import Bus
import Foundation
import Gateway
import NIOCore
import Testing

/// The agent port over TLS, with the real client, the real `acb serve` and the openssl command.
@Suite(.timeLimit(.minutes(1))) struct TLSEndToEndTests {
    static let serverTLS = TLSConfiguration(
        certificateChain: DevCertificates.path("server.pem"), privateKey: DevCertificates.path("server.key"),
        trustRoots: DevCertificates.path("ca.pem"))

    static func clientTLS(certificate agent: String? = nil, foreign: Bool = false) throws -> TLSContext {
        try TLSContext.client(
            TLSConfiguration(
                certificateChain: agent.map { DevCertificates.path("\($0).pem", foreign: foreign) },
                privateKey: agent.map { DevCertificates.path("\($0).key", foreign: foreign) },
                trustRoots: DevCertificates.path("ca.pem", foreign: foreign)))
    }

    @Test func agentsTalkOverTLS() async throws {
        try await TestBus.with({ $0.tls = Self.serverTLS }) { bus in
            let tls = try Self.clientTLS()
            let alice = try await bus.client("alice") { $0.tls = tls }
            let bob = try await bus.client("bob") { $0.tls = tls }
            var inbox = bob.deliveries.makeAsyncIterator()
            #expect(try await alice.send(to: .agent("bob"), ByteBuffer(string: "sealed")).recipients == 1)
            #expect(try await inbox.take().text == "sealed")
            await alice.close()
            await bob.close()
        }
    }

    /// A receiver that stops reading: the bus stops writing to it once the socket's buffer is full
    /// (TLS passes writes on as it encrypts them, so backpressure sees them), and senders are
    /// refused long before its window of 1,024 unacknowledged deliveries fills.
    @Test func aReceiverThatStopsReadingHoldsBackTheBusOverTLS() async throws {
        try await TestBus.with({
            $0.tls = Self.serverTLS
            $0.supervisor.mailboxCapacity = 16
            $0.supervisor.slowConsumerTimeoutMs = 600_000
        }) { bus in
            var bob = try await RawConnection.connect(port: bus.port, tls: try Self.clientTLS())
            guard case .welcome = try await bob.hello(try await bus.token("bob")) else {
                Issue.record("no WELCOME"); return
            }
            try await bob.stopReading()
            let alice = try await bus.client("alice") { $0.tls = try? Self.clientTLS() }
            let payload = ByteBuffer(repeating: 0x61, count: 256 << 10)
            var accepted = 0
            while accepted < 2_000 {
                do {
                    try await alice.send(to: .agent("bob"), payload)
                    accepted += 1
                } catch let error as BusError where error.code == .overloaded {
                    break
                }
            }
            #expect(accepted < 1_024, "\(accepted) messages of 256 KiB went to a receiver that reads nothing")
            await alice.close()
            await bob.close()
        }
    }

    @Test func aPlainTCPClientGetsNoWelcome() async throws {
        try await TestBus.with({ $0.tls = Self.serverTLS }) { bus in
            await #expect(throws: (any Error).self) { try await bus.client("alice") { $0.reconnect = false } }
        }
    }

    @Test func mutualTLSTiesTheCertificateToTheToken() async throws {
        var required = Self.serverTLS
        required.clientAuthentication = .required
        try await TestBus.with({ $0.tls = required }) { bus in
            let agent1 = try Self.clientTLS(certificate: "agent-1")
            let client = try await bus.client("agent-1") { $0.tls = agent1 }
            #expect(client.welcome?.agentID == "agent-1")
            await client.close()
            // The certificate says agent-1, the token agent-2.
            await expectBusError(.unauthenticated) { _ = try await bus.client("agent-2") { $0.tls = agent1 } }
            // A certificate with an OU is for that tenant only.
            let agent3 = try Self.clientTLS(certificate: "agent-3@acme")
            let inAcme = try await bus.client("agent-3", tenant: "acme") { $0.tls = agent3 }
            await inAcme.close()
            await expectBusError(.unauthenticated) {
                _ = try await bus.client("agent-3", tenant: "globex") { $0.tls = agent3 }
            }
            // No certificate at all, and one from a foreign CA: the TLS handshake fails.
            let anonymous = try Self.clientTLS()
            await #expect(throws: (any Error).self) { try await bus.client("agent-1") { $0.tls = anonymous } }
            let foreignTrustingOurs = try TLSContext.client(
                TLSConfiguration(
                    certificateChain: DevCertificates.path("agent-1.pem", foreign: true),
                    privateKey: DevCertificates.path("agent-1.key", foreign: true),
                    trustRoots: DevCertificates.path("ca.pem")))
            await #expect(throws: (any Error).self) {
                try await bus.client("agent-1") { $0.tls = foreignTrustingOurs }
            }
        }
    }

    @Test func openSSLCompletesTLS13AndIsRefusedOlderVersions() async throws {
        try await TestBus.with({ $0.tls = Self.serverTLS }) { bus in
            let connect = ["-connect", "127.0.0.1:\(bus.port)", "-brief"]
            let modern = try await Self.openSSL(
                connect + ["-CAfile", DevCertificates.path("ca.pem"), "-verify_return_error"])
            #expect(modern.status == 0 && modern.output.contains("Protocol version: TLSv1.3"), "\(modern.output)")
            // The client offers only the old version (SECLEVEL=0 lets it): the server answers with an alert.
            for old in ["-tls1_1", "-tls1_2"] {
                let refused = try await Self.openSSL(connect + [old, "-cipher", "DEFAULT@SECLEVEL=0"])
                #expect(refused.status != 0 && refused.output.contains("alert protocol version"), "\(refused.output)")
            }
        }
    }

    @Test func tls12IsAcceptedWhenConfigured() async throws {
        var tls12 = Self.serverTLS
        tls12.minimumVersion = .tls12
        try await TestBus.with({ $0.tls = tls12 }) { bus in
            let result = try await Self.openSSL([
                "-connect", "127.0.0.1:\(bus.port)", "-brief", "-tls1_2", "-CAfile", DevCertificates.path("ca.pem"),
            ])
            #expect(result.status == 0 && result.output.contains("Protocol version: TLSv1.2"), "\(result.output)")
        }
    }

    /// TLS 1.2 takes only ECDHE with AEAD ciphers: CBC suites, RSA key exchange (no forward
    /// secrecy) and DHE are refused, with an ECDSA (the development CA's) and an RSA certificate.
    @Test(arguments: [
        (false, "ECDHE-ECDSA-AES128-GCM-SHA256", true), (false, "ECDHE-ECDSA-CHACHA20-POLY1305", true),
        (false, "ECDHE-ECDSA-AES128-SHA", false), (false, "ECDHE-ECDSA-AES256-SHA384", false),
        (true, "ECDHE-RSA-AES256-GCM-SHA384", true), (true, "ECDHE-RSA-AES128-SHA", false),
        (true, "AES128-GCM-SHA256", false), (true, "AES256-SHA256", false), (true, "DHE-RSA-AES128-GCM-SHA256", false),
    ])
    func tls12TakesOnlyECDHEWithAEAD(rsa: Bool, cipher: String, accepted: Bool) async throws {
        var tls12 = rsa ? try Self.rsaServerTLS() : Self.serverTLS
        tls12.minimumVersion = .tls12
        try await TestBus.with({ $0.tls = tls12 }) { bus in
            let result = try await Self.openSSL([
                "-connect", "127.0.0.1:\(bus.port)", "-brief", "-tls1_2", "-cipher", "\(cipher)@SECLEVEL=0",
            ])
            let agreed = result.status == 0 && result.output.contains("Ciphersuite: \(cipher)")
            #expect(agreed == accepted, "\(cipher): \(result.output)")
        }
    }

    /// A self-signed RSA certificate for 127.0.0.1, made with the openssl command.
    static func rsaServerTLS() throws -> TLSConfiguration {
        let folder = NSTemporaryDirectory() + "acb-rsa-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let status = try Sidecars.spawnAndWait([
            "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-keyout", "\(folder)/server.key", "-out", "\(folder)/server.pem",
        ])
        try #require(status == 0, "openssl req failed")
        return TLSConfiguration(certificateChain: "\(folder)/server.pem", privateKey: "\(folder)/server.key")
    }

    /// SIGHUP makes `acb serve` read its certificate files again: new connections get the new
    /// certificate, the established one goes on.
    @Test func sighupReloadsCertificatesWithoutDroppingConnections() async throws {
        let folder = NSTemporaryDirectory() + "acb-reload-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func install(foreign: Bool) throws {
            for file in ["server.pem", "server.key"] {
                try? FileManager.default.removeItem(atPath: "\(folder)/\(file)")
                try FileManager.default.copyItem(
                    atPath: DevCertificates.path(file, foreign: foreign), toPath: "\(folder)/\(file)")
            }
        }
        try install(foreign: false)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLITests.acb)
        process.arguments = [
            "serve", "--port", "0", "--token-secret", TestBus.secret, "--tls-cert", "\(folder)/server.pem",
            "--tls-key", "\(folder)/server.key", "--stream-dir", "\(folder)/streams", "--admin-port", "0",
        ]
        process.environment = [:]
        let stderr = Pipe()
        process.standardError = stderr
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let log = stderr.fileHandleForReading
        let port = try #require(CLITests.listeningPort(log))
        let authority = try await TokenAuthority(secret: TestBus.secret)
        func connect(_ agent: String, trusting tls: TLSContext) async throws -> ACBClient {
            var configuration = ClientConfiguration(
                port: port,
                token: try await authority.issue(Identity(tenant: "t", agentID: agent, roles: ["agent-full"]), ttl: 60))
            configuration.tls = tls
            configuration.reconnect = false
            return try await ACBClient.connect(configuration)
        }
        let before = try await connect("before", trusting: try Self.clientTLS())
        try install(foreign: true)
        kill(process.processIdentifier, SIGHUP)
        #expect(CLITests.line(in: log, containing: "TLS certificates reloaded") != nil)
        let after = try await connect("after", trusting: try Self.clientTLS(foreign: true))
        var inbox = after.deliveries.makeAsyncIterator()
        #expect(try await before.send(to: .agent("after"), ByteBuffer(string: "still here")).recipients == 1)
        #expect(try await inbox.take().text == "still here")
        await #expect(throws: (any Error).self) { try await connect("late", trusting: try Self.clientTLS()) }
        await before.close()
        await after.close()
    }

    /// Runs `openssl s_client` with `arguments` and nothing on stdin; its stdout and stderr together.
    static func openSSL(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await Command.run("/usr/bin/openssl", ["s_client"] + arguments)
    }
}
