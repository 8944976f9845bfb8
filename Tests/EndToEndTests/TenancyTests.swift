import Bus
import Crypto
import NIOCore
import TestSupport
import Testing

/// Tenancy: an agent of tenant `acme` sends every client frame type naming what tenant `globex` has
/// (agents, a capability, a topic, a pending request, a delivery, an open upload): nothing reaches
/// globex, nothing of globex changes, and nothing of globex comes back.
@Suite(.timeLimit(.minutes(1))) struct TenancyTests {
    /// A raw connection that records the type of every frame it sends.
    struct Peer {
        var raw: RawConnection
        var sent: Set<FrameType> = []

        static func connect(_ bus: TestBus, _ agent: String, tenant: String) async throws -> Peer {
            var raw = try await bus.raw()
            guard case .welcome = try await raw.hello(try await bus.token(agent, tenant: tenant)) else {
                throw BusError(.unauthenticated, "no WELCOME for \(agent)")
            }
            return Peer(raw: raw)
        }

        /// Sends `frame` and, unless it gets no answer, returns the next frame.
        mutating func send(_ frame: Frame, answered: Bool = true) async throws -> Frame? {
            sent.insert(frame.type)
            try await raw.send(frame)
            return answered ? try await raw.read() : nil
        }
    }

    @Test func noFrameTypeCrossesTenants() async throws {
        try await TestBus.with { bus in
            var bob = try await Peer.connect(bus, "bob", tenant: "globex")
            var carol = try await Peer.connect(bus, "carol", tenant: "globex")
            let worker = AgentDescription(agentType: "worker", capabilities: ["plan"])
            #expect(try await bob.send(.register(Register(ref: 1, description: worker))) == .ok(Ok(ref: 1)))
            #expect(try await bob.send(.subscribe(PatternCommand(ref: 2, pattern: "news.>"))) == .ok(Ok(ref: 2)))
            // globex's things that acme will try to name: a request bob holds, and bob's open upload.
            _ = try await carol.send(
                .request(Send(ref: 1, target: .agent("bob"), payload: ByteBuffer(string: "q"))), answered: false)
            guard case .deliver(let request) = try await bob.raw.read() else { Issue.record("no request"); return }
            let data = ByteBuffer(string: "data")
            let open = StreamOpen(
                ref: 3, streamID: "s1", target: .agent("carol"), totalSize: 4, chunkSize: 4,
                sha256: Array(SHA256.hash(data: Array(data.readableBytesView))))
            guard case .streamStatus = try await bob.send(.streamOpen(open)) else { Issue.record("no upload"); return }

            var alice = try await Peer.connect(bus, "alice", tenant: "acme")
            func code(_ frame: Frame?) -> ErrorCode? {
                if case .error(let error) = frame { return error.error.code }
                if case .streamAbort(let abort) = frame { return abort.code }
                return nil
            }
            #expect(try await alice.send(.register(Register(ref: 1, description: worker))) == .ok(Ok(ref: 1)))
            guard case .discovered(let found) = try await alice.send(.discover(Discover(ref: 2, capability: "plan")))
            else {
                Issue.record("expected DISCOVERED"); return
            }
            #expect(found.agents.map(\.agentID) == ["alice"])
            #expect(
                code(try await alice.send(.send(Send(ref: 3, target: .agent("bob"), payload: data)))) == .unknownAgent)
            #expect(
                code(try await alice.send(.request(Send(ref: 4, target: .agent("bob"), payload: data))))
                    == .unknownAgent)
            #expect(
                code(try await alice.send(.request(Send(ref: 5, target: .capability("plan"), payload: data))))
                    == .noCapableAgent)
            var toBob = open
            toBob.ref = 6
            toBob.streamID = "s2"
            toBob.target = .agent("bob")
            #expect(code(try await alice.send(.streamOpen(toBob))) == .unknownAgent)
            #expect(
                try await alice.send(.broadcast(Fanout(ref: 7, payload: data))) == .ok(Ok(ref: 7, outcome: .delivered)))
            #expect(
                try await alice.send(.publish(Fanout(ref: 8, topic: "news.x", payload: data)))
                    == .ok(Ok(ref: 8, outcome: .delivered)))
            #expect(try await alice.send(.subscribe(PatternCommand(ref: 9, pattern: "news.>"))) == .ok(Ok(ref: 9)))
            // globex publishes on the topic both subscribed to: only bob receives it.
            #expect(
                try await carol.send(.publish(Fanout(ref: 2, topic: "news.y", payload: data)))
                    == .ok(Ok(ref: 2, outcome: .delivered, recipients: 1)))
            #expect(try await alice.send(.unsubscribe(PatternCommand(ref: 10, pattern: "news.>"))) == .ok(Ok(ref: 10)))
            // bob's request, delivery and upload, named by acme: nothing happens to them.
            _ = try await alice.send(
                .reply(Reply(correlationID: request.correlationID, payload: ByteBuffer(string: "forged"))),
                answered: false)
            _ = try await alice.send(.ack(Ack(deliveryID: request.deliveryID)), answered: false)
            _ = try await alice.send(.nack(Ack(deliveryID: request.deliveryID)), answered: false)
            _ = try await alice.send(.heartbeat(Heartbeat(readiness: .ready)), answered: false)
            _ = try await alice.send(
                .streamAbort(StreamAbort(streamID: "s1", code: .internal, message: "x")), answered: false)
            _ = try await alice.send(
                .streamStatus(StreamStatus(ref: 0, streamID: "s1", nextIndex: 0, bytes: 0)), answered: false)
            #expect(
                code(try await alice.send(.streamChunk(StreamChunk(streamID: "s1", index: 0, data: data))))
                    == .unknownStream)
            #expect(code(try await alice.send(.streamEnd(StreamEnd(ref: 11, streamID: "s1")))) == .unknownStream)
            #expect(code(try await alice.send(.streamResume(StreamRef(ref: 12, streamID: "s1")))) == .unknownStream)
            #expect(try await alice.send(.unregister(RefOnly(ref: 13))) == .ok(Ok(ref: 13)))
            // globex's context, named by acme: unknown, unlisted, and its changes unheard.
            let everyone = ContextAttributes(scope: .tenant)
            let plan = ContextWrite(ref: 5, operation: .put, id: "plan", attributes: everyone, body: data)
            guard case .context = try await carol.send(.contextWrite(plan)) else { Issue.record("no context"); return }
            var change = plan
            change.ref = 20
            change.operation = .update
            #expect(code(try await alice.send(.contextWrite(change))) == .unknownContext)
            #expect(code(try await alice.send(.contextGet(ContextGet(ref: 21, id: "plan")))) == .unknownContext)
            #expect(
                try await alice.send(.contextList(ContextList(ref: 22)))
                    == .contextPage(ContextPage(ref: 22, heads: [])))
            #expect(code(try await alice.send(.contextHistory(ContextQuery(ref: 23, id: "plan")))) == .unknownContext)
            #expect(code(try await alice.send(.contextLineage(ContextQuery(ref: 24, id: "plan")))) == .unknownContext)
            #expect(
                try await alice.send(.contextWatch(ContextWatch(ref: 25, target: "plan")))
                    == .contextWatching(ContextWatching(ref: 25, position: 0, replayed: 0)))
            #expect(
                try await alice.send(.contextWatch(ContextWatch(ref: 26, target: ">")))
                    == .contextWatching(ContextWatching(ref: 26, position: 0, replayed: 0)))
            change.ref = 6
            change.operation = .put
            guard case .context = try await carol.send(.contextWrite(change)) else { Issue.record("no update"); return }
            // Nothing from globex came to alice in between: her next answer is to her next command.
            guard case .discovered(let last) = try await alice.send(.discover(Discover(ref: 14))) else {
                Issue.record("alice received something else"); return
            }
            #expect(last.ref == 14)
            #expect(
                try await alice.send(.contextUnwatch(ContextUnwatch(ref: 27, watch: 25))) == .ok(Ok(ref: 27)))
            // globex's keys, asked for by acme: none.
            #expect(try await carol.send(.keyPublish(KeyPublish(ref: 7, keys: SampleFrames.keys))) == .ok(Ok(ref: 7)))
            #expect(code(try await alice.send(.keyFetch(KeyFetch(ref: 28, agentID: "carol")))) == .noKey)
            let own = PublicKeys(boxKey: Array(64..<96), signKey: Array(96..<128))
            #expect(try await alice.send(.keyPublish(KeyPublish(ref: 29, keys: own))) == .ok(Ok(ref: 29)))
            #expect(try await alice.send(.ping(RefOnly(ref: 16))) == .pong(RefOnly(ref: 16)))
            #expect(try await alice.send(.logout(RefOnly(ref: 15))) == .ok(Ok(ref: 15)))

            // globex is intact: bob's topic delivery, then bob's upload and reply go through.
            guard case .deliver(let news) = try await bob.raw.read() else { Issue.record("bob lost news.y"); return }
            #expect(news.subject == "news.y" && news.from == "carol")
            guard
                case .streamStatus = try await bob.send(.streamChunk(StreamChunk(streamID: "s1", index: 0, data: data)))
            else {
                Issue.record("bob's upload was touched"); return
            }
            #expect(
                try await bob.send(.streamEnd(StreamEnd(ref: 4, streamID: "s1")))
                    == .ok(Ok(ref: 4, outcome: .delivered, recipients: 1)))
            _ = try await bob.send(
                .reply(Reply(correlationID: request.correlationID, payload: ByteBuffer(string: "a"))), answered: false)
            var response: Response?
            while response == nil, let frame = try await carol.raw.read() {
                if case .response(let answer) = frame { response = answer }
            }
            #expect(response?.from == "bob" && response.map { String(buffer: $0.payload) } == "a")

            // HELLO, LOGIN and REFRESH come before the session: their tenant is the token's or the credential's.
            let clientFrames = Set(FrameType.allCases.filter { $0.isSentByClients && !$0.isHandshake })
            #expect(clientFrames.subtracting(alice.sent).isEmpty, "not tried: \(clientFrames.subtracting(alice.sent))")
            await alice.raw.close()
            await bob.raw.close()
            await carol.raw.close()
        }
    }
}
