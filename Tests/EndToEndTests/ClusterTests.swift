import ACBClient
import Bus
import Crypto
import Foundation
import Gateway
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Actors
@testable import Persistence

/// Several buses in one cluster (docs/cluster.md) on the sidecars `make test` started: agents on
/// different nodes reach each other, with the guarantees they have on one node.
extension SidecarTests {
    @Suite struct ClusterTests {
        /// Runs `body` with `count` nodes of a cluster of their own, each a bus of this process with
        /// PostgreSQL, Redis and Kafka, and an admin API.
        static func withCluster(
            _ count: Int, configure: @escaping (inout ServerConfiguration) -> Void = { _ in },
            _ body: ([TestBus]) async throws -> Void
        ) async throws {
            let name = "c-\(UUID().uuidString.prefix(8).lowercased())"
            func nest(_ nodes: [TestBus]) async throws {
                guard nodes.count < count else { return try await body(nodes) }
                try await TestBus.withSidecars(
                    redis: true, kafka: true,
                    {
                        $0.cluster = (name, "n\(nodes.count)")
                        $0.admin = AdminConfiguration()
                        $0.admin?.port = 0
                        configure(&$0)
                    }
                ) {
                    try await nest(nodes + [$0])
                }
            }
            try await nest([])
        }

        /// Runs `body` with `count` `acb serve` processes forming a cluster of their own (n0, n1, …),
        /// killed with SIGKILL afterwards (those the test did not kill already).
        static func withProcesses(_ count: Int, _ body: ([BusProcess]) async throws -> Void) async throws {
            let name = "c-\(UUID().uuidString.prefix(8).lowercased())"
            var nodes: [BusProcess] = []
            defer { nodes.forEach { $0.kill() } }
            for index in 0..<count {
                nodes.append(
                    try await BusProcess.start(
                        spool: Sidecars.scratch(),
                        arguments: ["--redis-url", try Sidecars.redis(), "--cluster", name, "--node-id", "n\(index)"]))
            }
            try await body(nodes)
        }

        /// Sends "warm" from `sender` to `receiver`, connected (its WELCOME read) and not registered:
        /// the sender's node finds it wherever it is, so it is delivered at once (were it not, the
        /// receiver would be an unknown agent, and the send would throw).
        static func routed(_ sender: ACBClient, to receiver: String) async throws {
            let ok = try await sender.send(to: .agent(receiver), ByteBuffer(string: "warm"))
            #expect(ok.outcome == .delivered)
        }

        /// One raw agent on each node, named `prefix` and the node's index, each having sent `command`
        /// (ref 1) and read its OK.
        static func rawAgents(_ nodes: [TestBus], _ prefix: String, tenant: String, command: () -> Frame)
            async throws -> [RawAgent]
        {
            var agents: [RawAgent] = []
            for (index, node) in nodes.enumerated() {
                var agent = try await RawAgent.connect(
                    port: node.port, token: try await node.token("\(prefix)\(index)", tenant: tenant))
                try await agent.connection.send(command())
                guard case .ok = try await agent.connection.read() else { throw BusError(.internal, "no OK") }
                agents.append(agent)
            }
            return agents
        }

        /// Bob on node 1 and alice on node 0 (clients both), once alice's node routes to bob (the
        /// message that showed it waits in bob's deliveries).
        static func clients(_ nodes: [TestBus], tenant: String) async throws -> (alice: ACBClient, bob: ACBClient) {
            let bob = try await nodes[1].client("bob", tenant: tenant)
            let alice = try await nodes[0].client("alice", tenant: tenant)
            try await routed(alice, to: "bob")
            return (alice, bob)
        }

        /// Bob (a raw agent) on node 1 and `sender` (a client) on node 0, once its node routes to
        /// bob; the message that showed it was taken and acknowledged.
        static func pair(_ nodes: [TestBus], tenant: String, sender: String = "alice") async throws
            -> (alice: ACBClient, bob: RawAgent)
        {
            var bob = try await RawAgent.connect(
                port: nodes[1].port, token: try await nodes[1].token("bob", tenant: tenant))
            let alice = try await nodes[0].client(sender, tenant: tenant)
            try await routed(alice, to: "bob")
            let warm = try await bob.nextDelivery()
            try await bob.connection.send(.ack(Ack(deliveryID: warm.deliveryID)))
            return (alice, bob)
        }

        @Test func sendsReachAnAgentOnAnotherNodeInOrder() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                var (alice, bob) = try await Self.pair(nodes, tenant: tenant)
                for index in 0..<100 {
                    let ok = try await alice.send(to: .agent("bob"), ByteBuffer(string: "m\(index)"))
                    #expect(ok.outcome == .delivered && ok.recipients == 1)
                }
                var texts: [String] = []
                while texts.count < 100 {
                    let deliver = try await bob.nextDelivery()
                    #expect(deliver.from == "alice")
                    texts.append(String(buffer: deliver.payload))
                    try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                }
                #expect(texts == (0..<100).map { "m\($0)" }, "in the order sent")
                await alice.close()
                await bob.connection.close()
            }
        }

        /// An agent is in the cluster's directory before its WELCOME: a SEND or a REQUEST from another
        /// node right after it reaches the agent, before that node's copy of the directory is read
        /// again (a fresh lookup), each a few times over. Redis is made slow to write as the agent
        /// connects (CLIENT PAUSE WRITE, while reads go on), so that a lookup made as soon as the
        /// agent's node answered HELLO would come before the write naming that node.
        @Test func anAgentThatJustConnectedToAnotherNodeIsFoundAtOnce() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let alice = try await nodes[0].client("alice", tenant: tenant)
                let redis = try RedisConnection(url: try Sidecars.redis())
                for index in 0..<8 {
                    let name = "bob\(index)"
                    _ = try redis.command("CLIENT", "PAUSE", "200", "WRITE")
                    let bob = try await nodes[1].client(name, tenant: tenant)
                    bob.serve { request in ByteBuffer(string: "echo " + request.text) }
                    func send() async throws {
                        let ok = try await alice.send(to: .agent(name), ByteBuffer(string: "right away"))
                        #expect(ok.outcome == .delivered)
                    }
                    func request() async throws {
                        let answer = try await alice.request(.agent(name), ByteBuffer(string: "q"), timeoutMs: 10_000)
                        #expect(answer.text == "echo q")
                    }
                    if index.isMultiple(of: 2) {
                        try await send()
                        try await request()
                    } else {
                        try await request()
                        try await send()
                    }
                    var deliveries = bob.deliveries.makeAsyncIterator()
                    #expect(await deliveries.next()?.payload == ByteBuffer(string: "right away"))
                    await bob.close()
                }
                await alice.close()
            }
        }

        /// Two connections of one agent that both wait for their WELCOME (Redis's writes paused, so
        /// the node's directory write waits): the newer takes over, and the older gets what the
        /// handshake answers, ERROR `replaced` with ref 0, not a GOAWAY before any WELCOME.
        @Test func aConnectionTakenOverBeforeItsWelcomeGetsAnError() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(1) { nodes in
                let token = try await nodes[0].token("bob", tenant: tenant)
                var connections = [
                    try await RawConnection.connect(port: nodes[0].port),
                    try await RawConnection.connect(port: nodes[0].port),
                ]
                _ = try RedisConnection(url: try Sidecars.redis()).command("CLIENT", "PAUSE", "500", "WRITE")
                for connection in connections {
                    try await connection.send(.hello(Hello(version: 3, token: token, clientName: "raw")))
                }
                var (welcomed, refused) = (0, 0)
                for index in connections.indices {
                    switch try await connections[index].read() {
                    case .welcome: welcomed += 1
                    case .error(let frame) where frame.ref == 0 && frame.error.code == .replaced: refused += 1
                    case let other: Issue.record("a handshake answered \(String(describing: other))")
                    }
                }
                #expect(welcomed == 1 && refused == 1)
                for connection in connections { await connection.close() }
            }
        }

        @Test func aRequestIsAnsweredByAnAgentOnAnotherNode() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(3) { nodes in
                let bob = try await nodes[2].client("bob", tenant: tenant)
                bob.serve { request in ByteBuffer(string: "echo " + request.text) }
                let alice = try await nodes[0].client("alice", tenant: tenant)
                try await Self.routed(alice, to: "bob")
                for index in 0..<20 {
                    let answer = try await alice.request(
                        .agent("bob"), ByteBuffer(string: "q\(index)"), timeoutMs: 10_000)
                    #expect(answer.from == "bob" && answer.status == .ok && answer.text == "echo q\(index)")
                }
                await alice.close()
                await bob.close()
            }
        }

        /// A responder on another node that never answers: the requester's node times the request
        /// out, and a late answer is dropped.
        @Test func aRequestToAnotherNodeTimesOut() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                var (alice, bob) = try await Self.pair(nodes, tenant: tenant)
                await #expect(throws: BusError.self) {
                    _ = try await alice.request(.agent("bob"), ByteBuffer(string: "no answer"), timeoutMs: 300)
                }
                let request = try await bob.nextDelivery()
                #expect(request.from == "alice" && request.correlationID != 0)
                await alice.close()
                await bob.connection.close()
            }
        }

        /// A durable SEND to an agent on another node is stored first (OK `queued`), and that node
        /// is told to read the agent's backlog.
        @Test func aDurableSendToAnotherNodeIsStoredThenDelivered() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                var (alice, bob) = try await Self.pair(nodes, tenant: tenant)
                let ok = try await alice.send(to: .agent("bob"), ByteBuffer(string: "kept"), durable: true)
                #expect(ok.outcome == .queued)
                let deliver = try await bob.nextDelivery()
                #expect(String(buffer: deliver.payload) == "kept" && deliver.messageID != 0)
                await alice.close()
                await bob.connection.close()
            }
        }

        /// A message stored for an offline agent is delivered when the agent connects to another node.
        @Test func aStoredMessageIsDeliveredOnTheNodeTheAgentConnectsTo() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let registered = try await RawAgent.connect(
                    port: nodes[0].port, token: try await nodes[0].token("bob", tenant: tenant), register: true)
                await registered.connection.close()
                let alice = try await nodes[0].client("alice", tenant: tenant)
                try await Sidecars.eventually("bob to be offline") {
                    try await alice.send(to: .agent("bob"), ByteBuffer(string: "while away")).outcome == .queued
                }
                var bob = try await RawAgent.connect(
                    port: nodes[1].port, token: try await nodes[1].token("bob", tenant: tenant))
                #expect(String(buffer: try await bob.nextDelivery().payload) == "while away")
                await alice.close()
                await bob.connection.close()
            }
        }

        /// A message delivered to an agent that disconnected before it acknowledged it is delivered
        /// again when the agent comes back on another node: its old node stores it for the agent.
        @Test func aMessageNotAcknowledgedFollowsItsAgentToAnotherNode() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let (alice, first) = try await Self.pair(nodes, tenant: tenant)
                var bob = first
                _ = try await alice.send(to: .agent("bob"), ByteBuffer(string: "unacknowledged"))
                #expect(String(buffer: try await bob.nextDelivery().payload) == "unacknowledged")
                await bob.connection.close()
                bob = try await RawAgent.connect(
                    port: nodes[0].port, token: try await nodes[0].token("bob", tenant: tenant))
                let again = try await bob.nextDelivery()
                #expect(String(buffer: again.payload) == "unacknowledged")
                await alice.close()
                await bob.connection.close()
            }
        }

        /// An agent's session is live on one node only: a newer one on another node ends the older,
        /// and what the older one held unacknowledged (a plain message, a durable one and a stream)
        /// comes to the newer.
        @Test func aSessionOnAnotherNodeTakesOver() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                var first = try await RawAgent.connect(
                    port: nodes[0].port, token: try await nodes[0].token("bob", tenant: tenant))
                let alice = try await nodes[0].client("alice", tenant: tenant)
                _ = try await alice.send(to: .agent("bob"), ByteBuffer(string: "plain"))
                _ = try await alice.send(to: .agent("bob"), ByteBuffer(string: "durable"), durable: true)
                let report = ByteBuffer(bytes: (0..<700_000).map { UInt8(truncatingIfNeeded: $0 &* 3) })
                _ = try await alice.upload(to: .agent("bob"), from: BufferSource(report), streamID: "report")
                // Taken, never acknowledged: two messages and the stream, downloaded whole.
                while let frame = try await first.connection.read() {
                    if case .streamEnd = frame { break }
                }
                var second = try await RawAgent.connect(
                    port: nodes[1].port, token: try await nodes[1].token("bob", tenant: tenant))
                var goAway: GoAway?
                while goAway == nil, let frame = try await first.connection.read() {
                    if case .goAway(let frame) = frame { goAway = frame }
                }
                #expect(goAway?.code == .replaced)
                var texts: Set<String> = []
                var download = ByteBuffer()
                var downloaded = false
                while texts.count < 2 || !downloaded, let frame = try await second.connection.read() {
                    // Acknowledged as they come: the next page of stored messages follows the last one's settling.
                    switch frame {
                    case .deliver(let deliver):
                        texts.insert(String(buffer: deliver.payload))
                        try await second.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                    case .streamChunk(var chunk):
                        download.writeBuffer(&chunk.data)
                    case .streamEnd(let end):
                        downloaded = true
                        try await second.connection.send(.ack(Ack(deliveryID: end.ref)))
                    default:
                        continue
                    }
                }
                #expect(texts == ["plain", "durable"])
                #expect(download == report, "relayed from the node it was on, and downloaded anew")
                try await Sidecars.eventually("n0 to route to n1") {
                    nodes[0].server.supervisor.cluster?.node(of: AgentKey(tenant: tenant, agentID: "bob")) == "n1"
                }
                await alice.close()
                await second.connection.close()
            }
        }

        /// A session that opens while Redis is away cannot tell the directory yet: once Redis is
        /// back its write goes through, and the agent's older session on another node is replaced
        /// then (never live on two nodes for longer than the outage).
        @Test func aSessionOpenedWhileRedisIsAwayTakesOverWhenItIsBack() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                var first = try await RawAgent.connect(
                    port: nodes[0].port, token: try await nodes[0].token("bob", tenant: tenant))
                let bob = AgentKey(tenant: tenant, agentID: "bob")
                try await Sidecars.eventually("node 1 to see bob on node 0") {
                    nodes[1].server.supervisor.cluster?.node(of: bob) == "n0"
                }
                let token = try await nodes[1].token("bob", tenant: tenant)
                var second: RawAgent?
                try await SidecarFaultTests.during(outageOf: "redis") {
                    second = try await RawAgent.connect(port: nodes[1].port, token: token)
                }
                var goAway: GoAway?
                while goAway == nil, let frame = try await first.connection.read() {
                    if case .goAway(let frame) = frame { goAway = frame }
                }
                #expect(goAway?.code == .replaced)
                await second?.connection.close()
            }
        }

        /// A BROADCAST reaches every member of the tenant on every node, and a PUBLISH every matching
        /// subscriber, plain or durable (each node stores its receivers' copies); OK counts the
        /// receivers of every node.
        @Test func broadcastsAndTopicsReachEveryNode() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(3) { nodes in
                var receivers = try await Self.rawAgents(nodes, "r", tenant: tenant) {
                    .subscribe(PatternCommand(ref: 1, pattern: "orders.*"))
                }
                let alice = try await nodes[0].client("alice", tenant: tenant)
                try await Sidecars.eventually("every node in node 0's copy") {
                    nodes[0].server.supervisor.cluster?.nodes(withMembersOf: tenant).count == 2
                }
                let broadcast = try await alice.broadcast(ByteBuffer(string: "to all"))
                #expect(broadcast == 3, "one on each node; alice is not a receiver")
                #expect(try await alice.publish(topic: "orders.new", ByteBuffer(string: "order 1")) == 3)
                #expect(try await alice.publish(topic: "invoices.new", ByteBuffer(string: "nobody")) == 0)
                // Durable: each node stores its receivers' copies before it answers.
                #expect(try await alice.broadcast(ByteBuffer(string: "kept"), durable: true) == 3)
                #expect(try await alice.publish(topic: "orders.kept", ByteBuffer(string: "kept"), durable: true) == 3)
                for index in receivers.indices {
                    let first = try await receivers[index].nextDelivery()
                    #expect(
                        first.kind == .broadcast && String(buffer: first.payload) == "to all" && first.from == "alice")
                    let second = try await receivers[index].nextDelivery()
                    #expect(second.kind == .topic && second.subject == "orders.new")
                    for (kind, subject) in [(DeliveryKind.broadcast, ""), (.topic, "orders.kept")] {
                        let kept = try await receivers[index].nextDelivery()
                        #expect(kept.kind == kind && kept.subject == subject && kept.messageID != nil, "stored")
                        try await receivers[index].connection.send(.ack(Ack(deliveryID: kept.deliveryID)))
                    }
                    await receivers[index].connection.close()
                }
                await alice.close()
            }
        }

        /// A PUBLISH goes only to the nodes with a subscriber whose pattern matches. A SUBSCRIBE
        /// is answered once every node knows of it, so a PUBLISH on another node right after the OK
        /// reaches it; once it unsubscribes, its node gets none.
        @Test func aPublishGoesOnlyToNodesWithAMatchingSubscriber() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(3) { nodes in
                let publisher = try await nodes[0].client("publisher", tenant: tenant)
                let reader = try await nodes[1].client("reader", tenant: tenant)
                let idle = try await nodes[2].client("idle", tenant: tenant)
                guard let interest = nodes[0].server.supervisor.interest else {
                    Issue.record("a node of a cluster keeps the nodes' subscriptions"); return
                }
                func targets(_ topic: String) -> [String] {
                    interest.nodes(for: tenant, topic: topic).sorted()
                }
                try await Sidecars.eventually("node 0 to have the other nodes' subscriptions") {
                    targets("news.a").isEmpty
                }
                try await reader.subscribe("news.>")
                #expect(targets("news.a") == ["n1"] && targets("weather.a").isEmpty)
                #expect(try await publisher.publish(topic: "news.a", ByteBuffer(string: "first")) == 1)
                var readings = reader.deliveries.makeAsyncIterator()
                #expect(await readings.next()?.text == "first")
                #expect(try await publisher.publish(topic: "weather.a", ByteBuffer(string: "nobody")) == 0)
                try await reader.unsubscribe("news.>")
                try await Sidecars.eventually("node 1's subscription to be gone from node 0") {
                    targets("news.a").isEmpty
                }
                #expect(try await publisher.publish(topic: "news.b", ByteBuffer(string: "nobody")) == 0)
                await publisher.close()
                await reader.close()
                await idle.close()
            }
        }

        /// A registration on one node is known to the others: DISCOVER lists the agent, a capability
        /// target finds it on its node, and once it is offline messages to it are stored, not refused.
        @Test func registrationsAndCapabilitiesReachEveryNode() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let alice = try await nodes[0].client("alice", tenant: tenant)
                let bob = try await nodes[1].client("bob", tenant: tenant)
                bob.serve { request in ByteBuffer(string: "echo " + request.text) }
                try await bob.register(AgentDescription(agentType: "echoer", capabilities: ["echo"]))
                try await Sidecars.eventually("bob in node 0's registry and directory") {
                    let found = try await alice.discover(capability: "echo").agents.map(\.agentID)
                    let routed = nodes[0].server.supervisor.cluster?.node(of: AgentKey(tenant: tenant, agentID: "bob"))
                    return found == ["bob"] && routed == "n1"
                }
                let answer = try await alice.request(.capability("echo"), ByteBuffer(string: "q"), timeoutMs: 10_000)
                #expect(answer.from == "bob" && answer.text == "echo q")
                let ok = try await alice.send(to: .capability("echo"), ByteBuffer(string: "to whoever echoes"))
                #expect(ok.outcome == .delivered)
                var deliveries = bob.deliveries.makeAsyncIterator()
                #expect(await deliveries.next()?.payload == ByteBuffer(string: "to whoever echoes"))
                await bob.close()
                try await Sidecars.eventually("bob to be offline at node 0") {
                    (try? await alice.send(to: .agent("bob"), ByteBuffer(string: "later")))?.outcome == .queued
                }
                await alice.close()
            }
        }

        /// A tenant's contexts are written at one node (the first to write claims it) and read and
        /// watched on every node: a write on either node is read on the other, compare-and-swap
        /// holds across nodes, and a watch on one node sees writes made through the other.
        @Test func contextsAreSharedAcrossNodes() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let alice = try await nodes[0].client("alice", tenant: tenant)
                let bob = try await nodes[1].client("bob", tenant: tenant)
                var events = try await bob.watch("plans.*").makeAsyncIterator()
                let shared = ContextOptions(scope: .tenant, writers: ["bob"])
                #expect(try await alice.share("plans.q3", "draft", options: shared).version == 1)
                #expect(nodes[0].server.supervisor.contextHome(of: tenant) == .here)
                try await Sidecars.eventually("node 1 to know node 0 writes the tenant's contexts") {
                    nodes[1].server.supervisor.contextHome(of: tenant) == .node("n0")
                }
                // Bob's write goes to node 0, and node 1 has the new version before bob hears OK.
                #expect(try await bob.update("plans.q3", "bob's", expectedVersion: 1).version == 2)
                #expect(try await bob.get("plans.q3").text == "bob's")
                let stale = await expectBusError(.versionConflict) {
                    try await alice.update("plans.q3", "alice's", expectedVersion: 1)
                }
                #expect(stale?.currentVersion == 2)
                try await Sidecars.eventually("alice's node to have bob's version") {
                    (try? await alice.get("plans.q3"))?.text == "bob's"
                }
                // Over the inline limit: uploaded to node 1, then written through node 0.
                let big = String(repeating: "x", count: 3_000_000)
                #expect(try await bob.update("plans.q3", big).version == 3)
                #expect(try await bob.get("plans.q3").text == big)
                // The admin API of node 1 writes through node 0 as well.
                let admin = try await nodes[1].admin(tenant: tenant)
                #expect(try await admin.put("/api/v1/contexts/plans.q3?expected_version=3", ["body": 4]).status == 200)
                #expect(try await alice.get("plans.q3").text == "4")
                var seen: [UInt64] = []
                for _ in 1...4 { seen.append(try await events.take().version) }
                #expect(seen == [1, 2, 3, 4], "node 1's watch saw every write, in order")
                await alice.close()
                await bob.close()
            }
        }

        /// A node that joins while traffic runs: the traffic between the others goes on untouched,
        /// and the new node's agent reads the contexts and reaches the agents of the others at once.
        @Test func aNodeAddedWhileTrafficRunsTakesPartAtOnce() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let name = try #require(nodes[0].server.cluster?.settings.cluster)
                let alice = try await nodes[0].client("alice", tenant: tenant)
                let bob = try await nodes[1].client("bob", tenant: tenant)
                try await alice.share("notes", "written before n2", options: ContextOptions(scope: .tenant))
                try await Self.routed(alice, to: "bob")
                let fromAlice = NIOLockedValueBox([String]())
                let reading = Task {
                    for await delivery in bob.deliveries {
                        delivery.ack()
                        let text = String(buffer: delivery.payload)
                        // Not the "warm" sends that show a route is there.
                        guard delivery.from == "alice", text.hasPrefix("m") else { continue }
                        fromAlice.withLockedValue { $0.append(text) }
                    }
                }
                let joined = NIOLockedValueBox(false)
                // Sends until the new node took part, and some more: how many it sent.
                let sending = Task {
                    var sent = 0
                    while !joined.withLockedValue({ $0 }) || sent % 100 != 0 {
                        let ok = try await alice.send(to: .agent("bob"), ByteBuffer(string: "m\(sent)"))
                        #expect(ok.outcome == .delivered)
                        sent += 1
                    }
                    return sent
                }
                try await TestBus.withSidecars(redis: true, kafka: true, { $0.cluster = (name, "n2") }) { third in
                    let carol = try await third.client("carol", tenant: tenant)
                    #expect(try await carol.get("notes").text == "written before n2")
                    try await Self.routed(carol, to: "bob")
                    try await Self.routed(alice, to: "carol")
                    joined.withLockedValue { $0 = true }
                    await carol.close()
                }
                let sent = try await sending.value
                try await Sidecars.eventually("every message of alice at bob") {
                    fromAlice.withLockedValue { $0.count } == sent
                }
                #expect(fromAlice.withLockedValue { $0 } == (0..<sent).map { "m\($0)" }, "in the order sent")
                reading.cancel()
                await alice.close()
                await bob.close()
            }
        }

        /// A stream to an agent on another node: uploaded and verified on the sender's node, relayed
        /// to the receiver's, checked again there and downloaded whole; OK once the receiver has it.
        @Test func aStreamReachesAnAgentOnAnotherNode() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let (alice, bob) = try await Self.clients(nodes, tenant: tenant)
                var streams = bob.streams.makeAsyncIterator()
                // Over two relay parts (1 MiB each), and one byte.
                for (size, name) in [(2_500_000, "report"), (1, "tiny")] {
                    let payload = ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) })
                    let ok = try await alice.upload(to: .agent("bob"), from: BufferSource(payload), streamID: name)
                    #expect(ok.outcome == .delivered)
                    let stream = try await streams.take()
                    #expect(stream.from == "alice" && stream.size == UInt64(size) && stream.streamID == name)
                    #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
                    try? FileManager.default.removeItem(atPath: stream.path)
                }
                await alice.close()
                await bob.close()
            }
        }

        /// An upload whose connection broke on one node is resumed on another: the node it was
        /// parked on hands over the chunks it stored, the upload goes on from there, and the
        /// receiver (on the first node) gets it whole. A resume nobody holds is `unknown_stream`.
        /// With `seenBroken` false the first node has not seen the connection break: the new
        /// session takes over, and the handover waits until the old one has closed.
        @Test(arguments: [true, false]) func anUploadIsResumedOnAnotherNode(seenBroken: Bool) async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2, configure: { $0.supervisor.limits.chunkSize = 256 << 10 }) { nodes in
                let bob = try await nodes[0].client("bob", tenant: tenant)
                try await Sidecars.eventually("node 1 to know bob's node") {
                    nodes[1].server.supervisor.cluster?.node(of: AgentKey(tenant: tenant, agentID: "bob")) != nil
                }
                let chunk = 256 << 10
                let payload = ByteBuffer(bytes: (0..<(10 * chunk + 1_000)).map { UInt8(truncatingIfNeeded: $0 &* 29) })
                func chunks(_ range: Range<Int>) -> [Frame] {
                    range.map { index in
                        let data = payload.getSlice(
                            at: index * chunk, length: min(chunk, payload.readableBytes - index * chunk))!
                        return .streamChunk(StreamChunk(streamID: "big", index: UInt32(index), data: data))
                    }
                }
                let token = try await nodes[0].token("alice", tenant: tenant)
                var first = try await RawAgent.connect(port: nodes[0].port, token: token)
                try await first.connection.send(
                    .streamOpen(
                        StreamOpen(
                            ref: 1, streamID: "big", target: .agent("bob"), totalSize: UInt64(payload.readableBytes),
                            chunkSize: UInt32(chunk), sha256: Array(SHA256.hash(data: Data(payload.readableBytesView))))
                    ))
                for frame in chunks(0..<6) { try await first.connection.send(frame) }
                var stored: UInt32 = 0
                while stored < 6 {
                    guard case .streamStatus(let status) = try await first.connection.read() else {
                        Issue.record("expected STREAM_STATUS"); return
                    }
                    stored = status.nextIndex
                }
                if seenBroken {
                    await first.connection.close()
                    try await Sidecars.eventually("node 0 to park the upload") {
                        nodes[0].server.supervisor.streams.count == 1
                    }
                }

                var second = try await RawAgent.connect(port: nodes[1].port, token: token)
                try await second.connection.send(.streamResume(StreamRef(ref: 2, streamID: "nothing")))
                guard case .error(let unknown) = try await second.connection.read() else {
                    Issue.record("expected ERROR"); return
                }
                #expect(unknown.ref == 2 && unknown.error.code == .unknownStream)
                try await second.connection.send(.streamResume(StreamRef(ref: 3, streamID: "big")))
                guard case .streamStatus(let resumed) = try await second.connection.read() else {
                    Issue.record("expected STREAM_STATUS"); return
                }
                #expect(resumed.ref == 3 && resumed.nextIndex == 6 && resumed.bytes == UInt64(6 * chunk))
                #expect(nodes[0].server.supervisor.streams.count == 0, "handed over, not parked there any more")
                // Chunk 5 again (a duplicate, ignored), then the rest.
                for frame in chunks(5..<11) { try await second.connection.send(frame) }
                try await second.connection.send(.streamEnd(StreamEnd(ref: 4, streamID: "big")))
                var answer = try await second.connection.read()
                while case .streamStatus = answer { answer = try await second.connection.read() }
                guard case .ok(let ok) = answer else {
                    Issue.record("expected OK, got \(String(describing: answer))"); return
                }
                #expect(ok.ref == 4 && ok.outcome == .delivered)
                var streams = bob.streams.makeAsyncIterator()
                let stream = try await streams.take()
                #expect(stream.from == "alice" && stream.streamID == "big")
                #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
                try? FileManager.default.removeItem(atPath: stream.path)
                if !seenBroken {
                    guard case .goAway(let replaced) = try await first.connection.read() else {
                        Issue.record("expected GOAWAY"); return
                    }
                    #expect(replaced.code == .replaced)
                    await first.connection.close()
                }
                await second.connection.close()
                await bob.close()
            }
        }

        /// A download whose connection closed on one node goes on on the node the agent connects to
        /// next: the stream kept for it is relayed there and offered anew, and the receiver resumes
        /// it from the chunks it kept (STREAM_STATUS).
        @Test func anInterruptedDownloadIsResumedOnAnotherNode() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2, configure: { $0.supervisor.limits.chunkSize = 256 << 10 }) { nodes in
                let alice = try await nodes[0].client("alice", tenant: tenant)
                var first = try await RawAgent.connect(
                    port: nodes[0].port, token: try await nodes[0].token("bob", tenant: tenant))
                let report = ByteBuffer(bytes: (0..<700_000).map { UInt8(truncatingIfNeeded: $0 &* 5) })
                _ = try await alice.upload(to: .agent("bob"), from: BufferSource(report), streamID: "report")
                // Bob keeps chunk 0 of the three, then his connection closes.
                var kept = ByteBuffer()
                while kept.readableBytes == 0, let frame = try await first.connection.read() {
                    if case .streamChunk(var chunk) = frame, chunk.index == 0 { kept.writeBuffer(&chunk.data) }
                }
                await first.connection.close()
                let bob = AgentKey(tenant: tenant, agentID: "bob")
                try await Sidecars.eventually("node 1 to hear bob left node 0") {
                    nodes[1].server.supervisor.cluster?.node(of: bob) == nil
                }

                var second = try await RawAgent.connect(
                    port: nodes[1].port, token: try await nodes[1].token("bob", tenant: tenant))
                var open: StreamOpen?
                while open == nil, let frame = try await second.connection.read() {
                    if case .streamOpen(let frame) = frame { open = frame }
                }
                let offered = try #require(open)
                #expect(offered.streamID.hasSuffix("/report") && offered.totalSize == 700_000)
                try await second.connection.send(
                    .streamStatus(
                        StreamStatus(
                            ref: offered.ref, streamID: offered.streamID, nextIndex: 1,
                            bytes: UInt64(kept.readableBytes))))
                var download = kept
                while let frame = try await second.connection.read() {
                    if case .streamChunk(var chunk) = frame, chunk.index >= 1 { download.writeBuffer(&chunk.data) }
                    if case .streamEnd(let end) = frame {
                        try await second.connection.send(.ack(Ack(deliveryID: end.ref)))
                        break
                    }
                }
                #expect(download == report, "chunk 0 kept, the rest downloaded on node 1")
                #expect(nodes[0].server.supervisor.routing.takeOrphans(of: bob).isEmpty, "nothing left on node 0")
                await alice.close()
                await second.connection.close()
            }
        }

        /// An idempotency key used on one node is honoured on another: the agent's retry there, after
        /// it moved, is answered with the first result and delivers nothing again.
        @Test func anIdempotencyKeyHoldsAcrossNodes() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let (alice, bob) = try await Self.clients(nodes, tenant: tenant)
                var deliveries = bob.deliveries.makeAsyncIterator()
                #expect(await deliveries.next()?.payload == ByteBuffer(string: "warm"))
                let first = try await alice.send(to: .agent("bob"), ByteBuffer(string: "once"), idempotencyKey: "k1")
                #expect(first.outcome == .delivered && first.recipients == 1)
                #expect(await deliveries.next()?.payload == ByteBuffer(string: "once"))
                let redis = try RedisConnection(url: try Sidecars.redis())
                try await Sidecars.eventually("the key in Redis") {
                    try redis.command("EXISTS", "acb:idem:\(tenant)/alice/k1") == .integer(1)
                }
                await alice.close()
                // Alice again, now on bob's node, which has not seen the key.
                let moved = try await nodes[1].client("alice", tenant: tenant)
                let retry = try await moved.send(to: .agent("bob"), ByteBuffer(string: "once"), idempotencyKey: "k1")
                #expect(retry.outcome == first.outcome && retry.recipients == first.recipients)
                _ = try await moved.send(to: .agent("bob"), ByteBuffer(string: "after"))
                #expect(await deliveries.next()?.payload == ByteBuffer(string: "after"), "no second copy")
                await moved.close()
                await bob.close()
            }
        }

        /// The admin API of any node lists the cluster's live nodes with their agents and load, and
        /// where an agent's session is; each node's metrics carry its id.
        @Test func theAdminAPIShowsTheCluster() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                let bob = try await nodes[1].client("bob", tenant: tenant)
                try await bob.register(AgentDescription(agentType: "worker", capabilities: []))
                let admin = try await nodes[0].admin(tenant: tenant)
                try await Sidecars.eventually("both nodes listed, bob's session on n1") {
                    let view = try? await admin.get("/api/v1/cluster").json
                    let listed = view?["nodes"] as? [[String: Any]] ?? []
                    return view?["node_id"] as? String == "n0"
                        && listed.map { $0["node_id"] as? String } == ["n0", "n1"]
                        && listed.map { $0["local"] as? Bool } == [true, false]
                        && listed.map { $0["agents"] as? Int } == [0, 1]
                        && listed.map { $0["sessions"] as? Int } == [0, 1]
                }
                #expect(try await admin.get("/api/v1/agents/bob").json["node"] as? String == "n1")
                // The document's declaration of the cluster's view holds for a real cluster's answers.
                let status = try await SidecarTests.AdminSchemaTests.schemathesis(
                    port: admin.port, token: try #require(admin.token), ["--include-operation-id", "clusterNodes"])
                #expect(status == 0, "GET /api/v1/cluster does not match openapi.yaml (the report is above)")
                let metrics = try await admin.get("/metrics").text
                #expect(metrics.contains("acb_cluster_nodes{node=\"n0\"} 2"))
                #expect(metrics.contains("acb_agents_online{node=\"n0\"} 0"))
                #expect(!metrics.split(separator: "\n").contains { !$0.hasPrefix("#") && !$0.contains("node=\"n0\"") })
                await bob.close()
            }
            try await TestBus.withSidecars({
                $0.admin = AdminConfiguration()
                $0.admin?.port = 0
            }) { single in
                let reply = try await single.admin().get("/api/v1/cluster")
                #expect(reply.status == 404 && reply.code == "not_found")
            }
        }

        /// A receiver that is full on its node, and a protocol 1 sender (no credit to keep to): the
        /// messages that find it so are queued all the same, in order, and the sender's node refuses
        /// the next SENDs to it with `overloaded` for a moment, as the receiver's node would; nothing
        /// answered OK is lost.
        @Test func aFullReceiverOnAnotherNodeSlowsItsSenders() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(
                2,
                configure: {
                    $0.supervisor.mailboxCapacity = 64
                    $0.supervisor.limits.maxUnacked = 4
                }
            ) { nodes in
                // Bob reads nothing until the end: his queue on node 1 (64, and 4 in flight) is full
                // after 68. Alice sends until her node refuses one, slowly after those 68, so that
                // the word from bob's node comes long before twice the queue's bound (beyond it,
                // what comes is stored and may overtake what is queued).
                var (alice, bob) = try await Self.pair(nodes, tenant: tenant)
                var answered: [String] = []
                var refused = false
                while !refused, answered.count < 128 {
                    let text = "m\(answered.count)"
                    do {
                        _ = try await alice.send(to: .agent("bob"), ByteBuffer(string: text))
                        answered.append(text)
                    } catch let error as BusError where error.code == .overloaded {
                        refused = true
                    }
                    if answered.count >= 68 { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(refused, "the sender's node refused one while bob was full")
                var texts: [String] = []
                while texts.count < answered.count {
                    let deliver = try await bob.nextDelivery()
                    texts.append(String(buffer: deliver.payload))
                    try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                }
                #expect(texts == answered, "every answered message, in order")
                await alice.close()
                await bob.connection.close()
            }
        }

        /// A protocol 2 sender's credit for a SEND to an agent on another node comes back when the
        /// receiver's session takes the message there, not when Kafka took it: with a window of 16
        /// and bob taking 4 at a time (4 unacknowledged at most), alice has 4 back after all 16 were
        /// answered, 8 once bob acknowledged 4, and all but less than a quarter of the window (the
        /// bus grants a quarter at a time) once he acknowledged them all.
        @Test func aSendersCreditComesBackWhenAReceiverOnAnotherNodeTakesItsMessages() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(
                2,
                configure: {
                    $0.supervisor.sendWindow = 16
                    $0.supervisor.limits.maxUnacked = 4
                }
            ) { nodes in
                // Bob takes a message from carol (protocol 1, no credit) first: he has read his
                // backlog, so none of alice's is stored (which would give its credit back at once).
                var (carol, bob) = try await Self.pair(nodes, tenant: tenant, sender: "carol")
                var alice = try await RawAgent.connect(
                    port: nodes[0].port, token: try await nodes[0].token("alice", tenant: tenant))
                try await alice.send(16, to: "bob") { _ in false }
                var (answered, granted) = (UInt64(0), UInt32(0))
                /// Reads alice's frames until `enough` holds of what was answered and granted so far.
                func read(until enough: () -> Bool) async throws {
                    while !enough() {
                        switch try await alice.connection.read() {
                        case .ok(let ok): answered = max(answered, ok.ref)
                        case .confirm(let confirm): answered = max(answered, confirm.ref)
                        case .credit(let credit): granted += credit.grant
                        case let other: throw BusError(.internal, "alice got \(String(describing: other))")
                        }
                    }
                }
                try await read { answered == 16 && granted >= 4 }
                #expect(granted == 4, "only what bob's session took")
                var deliveries: [Deliver] = []
                for _ in 0..<4 { deliveries.append(try await bob.nextDelivery()) }
                for deliver in deliveries { try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID))) }
                try await read { granted >= 8 }
                #expect(granted == 8)
                while deliveries.count < 16 {
                    let deliver = try await bob.nextDelivery()
                    deliveries.append(deliver)
                    try await bob.connection.send(.ack(Ack(deliveryID: deliver.deliveryID)))
                }
                #expect(deliveries.map { String(buffer: $0.payload) } == (0..<16).map { "m\($0)" })
                // The bus grants once a quarter of the window (4) is back: at most 3 wait for more.
                try await read { granted > 12 }
                #expect(granted <= 16)
                await carol.close()
                await alice.connection.close()
                await bob.connection.close()
            }
        }

        /// A capability target goes to the least loaded ready agent of the whole cluster: one on
        /// another node when the sender's node's own is busier, this node's on a tie, and never one
        /// that its node reports not ready.
        @Test func aCapabilityGoesToTheLeastLoadedAgentOfTheCluster() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withCluster(2) { nodes in
                var workers = try await Self.rawAgents(nodes, "w", tenant: tenant) {
                    .register(
                        Register(ref: 1, description: AgentDescription(agentType: "worker", capabilities: ["work"])))
                }
                let alice = try await nodes[0].client("alice", tenant: tenant)
                let cluster = try #require(nodes[0].server.supervisor.cluster)
                try await Sidecars.eventually("node 0 to know w1 offers work and is idle") {
                    let offered = try await alice.discover(capability: "work").agents.count == 2
                    return offered
                        && cluster.remoteLoad(of: AgentKey(tenant: tenant, agentID: "w1")) == .ready(inFlight: 0)
                }
                let tie = try await alice.send(to: .capability("work"), ByteBuffer(string: "tie"))
                #expect(tie.outcome == .delivered)
                #expect(String(buffer: try await workers[0].nextDelivery().payload) == "tie", "this node's on a tie")
                // w0 now has one delivery in flight (not acknowledged); w1, on the other node, none.
                let job = try await alice.send(to: .capability("work"), ByteBuffer(string: "job"))
                #expect(job.outcome == .delivered)
                #expect(String(buffer: try await workers[1].nextDelivery().payload) == "job")
                // w1 says it is busy and w0 leaves: no ready agent offers work anywhere.
                try await workers[1].connection.send(.heartbeat(Heartbeat(readiness: .busy)))
                await workers[0].connection.close()
                try await Sidecars.eventually("node 0 to hear that w1 is busy") {
                    cluster.remoteLoad(of: AgentKey(tenant: tenant, agentID: "w1")) == .notReady
                }
                await expectBusError(.noCapableAgent) {
                    _ = try await alice.send(to: .capability("work"), ByteBuffer(string: "nobody"))
                }
                for worker in workers { await worker.connection.close() }
                await alice.close()
            }
        }

        /// kill -9 of the node an agent is on: the agent's client moves on to another node, and every
        /// durable message answered OK before, during and after is delivered to it.
        @Test func nothingDurableIsLostWhenANodeIsKilled() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withProcesses(3) { nodes in
                let bob = try await nodes[0].client("bob", tenant: tenant, otherNodes: [nodes[1], nodes[2]])
                let alice = try await nodes[2].client("alice", tenant: tenant)
                let received = NIOLockedValueBox(Set<String>())
                let reading = Task {
                    for await delivery in bob.deliveries {
                        received.withLockedValue { _ = $0.insert(String(buffer: delivery.payload)) }
                        delivery.ack()
                    }
                }
                try await Self.routed(alice, to: "bob")
                var answered: [String] = []
                for index in 0..<60 {
                    if index == 20 { nodes[0].kill() }
                    let text = "d\(index)"
                    // Refused while bob is nowhere (an unknown agent to alice's node): sent again.
                    try await Sidecars.eventually("\(text) to be stored") {
                        (try? await alice.send(to: .agent("bob"), ByteBuffer(string: text), durable: true))?.outcome
                            == .queued
                    }
                    answered.append(text)
                }
                try await Sidecars.eventually("every answered message at bob") {
                    received.withLockedValue { $0.isSuperset(of: answered) }
                }
                reading.cancel()
                await alice.close()
                await bob.close()
            }
        }

        /// kill -9 of the node that writes a tenant's contexts: another node becomes their home,
        /// reads them again from PostgreSQL, and takes writes; every write that was answered is kept.
        @Test func contextsOutliveTheNodeThatWroteThem() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withProcesses(2) { nodes in
                let alice = try await nodes[0].client("alice", tenant: tenant, otherNodes: [nodes[1]])
                let bob = try await nodes[1].client("bob", tenant: tenant)
                try await alice.share("doc", "w0", options: ContextOptions(scope: .tenant))
                var answered: [(version: UInt64, text: String)] = []
                for index in 1...12 {
                    if index == 6 { nodes[0].kill() }
                    let text = "w\(index)"
                    // Refused while alice reconnects, and while node 1 still takes node 0 for the home
                    // (until its key expires): written again.
                    try await Sidecars.eventually("\(text) to be written") {
                        guard let head = try? await alice.update("doc", text) else { return false }
                        answered.append((head.version, text))
                        return true
                    }
                }
                #expect(try await bob.get("doc").text == "w12")
                for (version, text) in answered {
                    #expect(try await bob.get("doc", version: version).text == text, "version \(version)")
                }
                await alice.close()
                await bob.close()
            }
        }

        /// kill -9 of the node an upload goes through: the sender's client moves to another node,
        /// which does not have the part already sent, and uploads it again from the start there;
        /// the receiver gets it once, whole.
        @Test func anUploadCutByANodesDeathIsResumedOnAnother() async throws {
            let tenant = TestBus.freshTenant()
            try await Self.withProcesses(2) { nodes in
                let bob = try await nodes[1].client("bob", tenant: tenant)
                let alice = try await nodes[0].client("alice", tenant: tenant, otherNodes: [nodes[1]])
                try await Self.routed(alice, to: "bob")
                let payload = ByteBuffer(bytes: (0..<30_000_000).map { UInt8(truncatingIfNeeded: $0 &* 13) })
                let killed = NIOLockedValueBox(false)
                let ok = try await alice.upload(to: .agent("bob"), from: BufferSource(payload), streamID: "big") {
                    stored, _ in
                    guard stored > 4_000_000, !killed.withLockedValue({ $0 }) else { return }
                    killed.withLockedValue { $0 = true }
                    nodes[0].kill()
                }
                #expect(ok.outcome == .delivered && killed.withLockedValue { $0 })
                var streams = bob.streams.makeAsyncIterator()
                let stream = try await streams.take()
                #expect(stream.streamID == "big" && stream.size == 30_000_000)
                #expect(FileManager.default.contents(atPath: stream.path) == Data(payload.readableBytesView))
                try? FileManager.default.removeItem(atPath: stream.path)
                await alice.close()
                await bob.close()
            }
        }

        /// Ids the nodes make never collide: each node's are congruent to its own slot.
        @Test func eachNodeMakesIdsOfItsOwnSlot() async throws {
            try await Self.withCluster(2) { nodes in
                let slots = nodes.map { $0.server.supervisor.cluster?.idSlot }
                #expect(Set(slots.compactMap { $0 }).count == 2)
                for (node, slot) in zip(nodes, slots) {
                    for _ in 0..<3 { #expect(node.server.supervisor.nextMessageID() % ClusterRecord.idStride == slot) }
                }
            }
        }
    }
}
