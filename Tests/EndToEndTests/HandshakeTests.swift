import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import NIOPosix
import Testing

@Suite(.timeLimit(.minutes(1))) struct HandshakeTests {
    @Test func aGoodTokenGetsWelcomeWithTheLimits() async throws {
        try await TestBus.with { bus in
            let client = try await bus.client("alice")
            let welcome = try #require(client.welcome)
            #expect(welcome.agentID == "alice")
            #expect(welcome.tenant == "acme")
            #expect(welcome.limits == Limits())
            await client.close()
        }
    }

    @Test func framesSplitAcrossReadsOrSharingOneAreEachDecoded() async throws {
        // A HELLO of some 300 one-byte writes, each awaited, takes its time on a loaded machine:
        // what is tested here is reassembly, not the handshake's deadline.
        try await TestBus.with({ $0.handshakeTimeout = .seconds(120) }) { bus in
            var raw = try await bus.raw()
            var hello = ByteBuffer()
            Frame.hello(Hello(version: 1, token: try await bus.token("alice"), clientName: "split")).encode(
                into: &hello)
            // One byte per write: the server must keep each part until the frame is whole.
            while hello.readableBytes > 0 { try await raw.send(hello.readSlice(length: 1)!) }
            guard case .welcome = try await raw.read() else { Issue.record("expected WELCOME"); return }
            var both = ByteBuffer()
            Frame.subscribe(PatternCommand(ref: 1, pattern: "a.>")).encode(into: &both)
            Frame.subscribe(PatternCommand(ref: 2, pattern: "b.*")).encode(into: &both)
            try await raw.send(both)
            #expect(try await raw.read() == .ok(Ok(ref: 1)))
            #expect(try await raw.read() == .ok(Ok(ref: 2)))
            await raw.close()
        }
    }

    @Test func aForgedTokenIsRefused() async throws {
        try await TestBus.with { bus in
            let other = try await TokenAuthority(secret: String(repeating: "x", count: 32))
            let forged = try await other.issue(Identity(tenant: "acme", agentID: "alice", roles: ["admin"]), ttl: 60)
            await expectBusError(.unauthenticated) {
                _ = try await ACBClient.connect(ClientConfiguration(port: bus.port, token: forged))
            }
        }
    }

    @Test func anExpiredTokenIsRefused() async throws {
        try await TestBus.with { bus in
            let expired = try await bus.token("alice", ttl: -60)
            await expectBusError(.unauthenticated) {
                _ = try await ACBClient.connect(ClientConfiguration(port: bus.port, token: expired))
            }
        }
    }

    @Test func garbageInsteadOfATokenIsRefused() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            guard case .error(let error) = try await raw.hello("not-a-jwt") else {
                Issue.record("expected ERROR")
                return
            }
            #expect(error.error.code == .unauthenticated)
            #expect(try await raw.read() == nil, "the server closes the connection")
        }
    }

    @Test func anUnknownProtocolVersionIsRefused() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            let version = Limits.protocolVersions.upperBound + 1
            try await raw.send(.hello(Hello(version: version, token: try await bus.token("alice"), clientName: "raw")))
            guard case .error(let error) = try await raw.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .unsupportedVersion)
        }
    }

    @Test func aFirstFrameOtherThanHelloIsRefused() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            try await raw.send(.heartbeat(Heartbeat(readiness: .ready)))
            guard case .error(let error) = try await raw.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .badFrame)
        }
    }

    @Test func aMalformedFrameAfterTheHandshakeEndsTheSessionWithBadFrame() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            guard case .welcome = try await raw.hello(try await bus.token("alice")) else {
                Issue.record("expected WELCOME"); return
            }
            try await raw.send(ByteBuffer(bytes: [0, 0, 0, 1, 0x7F]))
            guard case .goAway(let goAway) = try await raw.read() else { Issue.record("expected GOAWAY"); return }
            #expect(goAway.code == .badFrame)
            #expect(try await raw.read() == nil)
        }
    }

    @Test func aServerFrameFromAClientIsABadFrameAndTheSessionGoesOn() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            _ = try await raw.hello(try await bus.token("alice"))
            try await raw.send(.ok(Ok(ref: 1)))
            guard case .error(let error) = try await raw.read() else { Issue.record("expected ERROR"); return }
            #expect(error.ref == 0 && error.error.code == .badFrame)
            try await raw.send(.discover(Discover(ref: 2)))
            guard case .discovered(let page) = try await raw.read() else { Issue.record("expected DISCOVERED"); return }
            #expect(page.ref == 2)
        }
    }

    @Test func anOversizedFrameLengthEndsTheSessionWithTooLarge() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            _ = try await raw.hello(try await bus.token("alice"))
            try await raw.send(ByteBuffer(bytes: [0x7F, 0xFF, 0xFF, 0xFF, FrameType.send.rawValue]))
            guard case .goAway(let goAway) = try await raw.read() else { Issue.record("expected GOAWAY"); return }
            #expect(goAway.code == .tooLarge)
        }
    }

    @Test func aSilentConnectionIsClosedAfterTheHandshakeTimeout() async throws {
        try await TestBus.with({ $0.handshakeTimeout = .milliseconds(100) }) { bus in
            var raw = try await bus.raw()
            guard case .error(let error) = try await raw.read() else { Issue.record("expected ERROR"); return }
            #expect(error.error.code == .unauthenticated)
            #expect(try await raw.read() == nil)
        }
    }

    @Test func connectingToAClosedPortThrows() async throws {
        // Port 1: nothing listens there. (A port a test's bus just gave up can be taken again at
        // once by another test's bus, running in parallel.)
        do {
            _ = try await ACBClient.connect(ClientConfiguration(port: 1, token: "t"))
            Issue.record("connected to a closed port")
        } catch let error as NIOConnectionError {
            #expect(error.connectionErrors.contains { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }, "\(error)")
        }
    }

    @Test func hugeStringsQuotedInErrorsDoNotHurtTheServer() async throws {
        try await TestBus.with { bus in
            var raw = try await bus.raw()
            _ = try await raw.hello(try await bus.token("alice"))
            let huge = String(repeating: "x", count: 65_000)
            try await raw.send(.unsubscribe(PatternCommand(ref: 1, pattern: huge)))
            try await raw.send(.streamResume(StreamRef(ref: 2, streamID: huge)))
            try await raw.send(.streamChunk(StreamChunk(streamID: huge, index: 0, data: ByteBuffer())))
            for _ in 0..<3 {
                switch try await raw.read() {
                case .error(let error): #expect(error.error.message.utf8.count <= Limits.maxMessageBytes)
                case .streamAbort(let abort): #expect(abort.message.utf8.count <= Limits.maxMessageBytes)
                default: Issue.record("expected ERROR or STREAM_ABORT")
                }
            }
            try await raw.send(.discover(Discover(ref: 3)))
            guard case .discovered = try await raw.read() else { Issue.record("the session is gone"); return }
        }
    }

    @Test func aRoleWithoutPermissionIsForbidden() async throws {
        try await TestBus.with { bus in
            let bob = try await bus.client("bob")
            let observer = try await bus.client("watcher", roles: ["observer"])
            await expectBusError(.forbidden) { try await observer.send(to: .agent("bob"), ByteBuffer(string: "x")) }
            await expectBusError(.forbidden) { try await observer.subscribe("a.>") }
            #expect(try await observer.discover().agents.isEmpty)
            await observer.close()
            await bob.close()
        }
    }
}
