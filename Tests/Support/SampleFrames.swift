public import Bus
public import NIOCore

/// One frame of every type, with every field set to a non-default value.
public enum SampleFrames {
    public static let payload = ByteBuffer(string: "payload ✓")
    public static let digest = [UInt8](repeating: 0xAB, count: 32)

    public static let all: [Frame] = [
        .hello(Hello(token: "eyJ.t.s", clientName: "tests")),
        .welcome(Welcome(sessionID: 7, tenant: "acme", agentID: "alice", limits: Limits())),
        .error(ErrorFrame(ref: 9, error: BusError(.overloaded, "full", retryAfterMs: 100))),
        .goAway(GoAway(code: .shuttingDown, message: "bye")),
        .ok(Ok(ref: 3, outcome: .delivered, recipients: 2)),
        .login(Login(tenant: "acme", agentID: "alice", secret: "correct horse battery")),
        .refresh(Refresh(refreshToken: "eyJ.r.s")),
        .tokens(
            Tokens(accessToken: "eyJ.a.s", refreshToken: "eyJ.r.s", accessExpiresInS: 3600, refreshExpiresInS: 604_800)),
        .logout(RefOnly(ref: 11)),
        .credit(Credit(grant: 1024)),
        .ping(RefOnly(ref: 7)),
        .pong(RefOnly(ref: 7)),
        .confirm(RefOnly(ref: 42)),
        .register(
            Register(
                ref: 1,
                description: AgentDescription(
                    agentType: "planner", capabilities: ["plan", "summarize"], location: "eu-west",
                    metadata: [MetadataEntry(key: "model", value: "x-1")]))),
        .unregister(RefOnly(ref: 2)),
        .discover(Discover(ref: 4, agentType: "planner", capability: "plan", status: .online, cursor: "a", limit: 10)),
        .discovered(
            Discovered(
                ref: 4,
                agents: [
                    AgentInfo(
                        agentID: "bob", description: AgentDescription(agentType: "t", capabilities: ["c"]),
                        status: .online,
                        readiness: .busy, inFlight: 3)
                ], nextCursor: "bob")),
        .heartbeat(Heartbeat(readiness: .draining)),
        .send(Send(ref: 5, target: .agent("bob"), idempotencyKey: "k1", deadline: 1_900_000_000_000, payload: payload)),
        .broadcast(Fanout(ref: 6, deadline: 42, payload: payload)),
        .publish(Fanout(ref: 7, topic: "news.eu", payload: payload)),
        .send(Send(ref: 14, target: .agent("bob"), payload: payload, flags: .durable)),
        .publish(Fanout(ref: 15, topic: "news.eu", payload: payload, flags: .durable)),
        .subscribe(PatternCommand(ref: 8, pattern: "news.*")),
        .unsubscribe(PatternCommand(ref: 9, pattern: "news.>")),
        .deliver(
            Deliver(
                deliveryID: 11, kind: .topic, from: "alice", subject: "news.eu", correlationID: 0,
                deadline: 99, attempt: 2, payload: payload)),
        .deliver(Deliver(deliveryID: 12, kind: .direct, from: "alice", payload: payload, messageID: 7 << 40)),
        .ack(Ack(deliveryID: 11, cumulative: true)),
        .nack(Ack(deliveryID: 12)),
        .request(Send(ref: 13, target: .capability("plan"), deadline: 1_900_000_000_000, payload: payload)),
        .reply(Reply(correlationID: 1 << 32 | 5, status: .error, payload: payload)),
        .response(Response(ref: 13, from: "bob", status: .ok, payload: payload)),
        .streamOpen(
            StreamOpen(
                ref: 14, streamID: "s1", target: .agent("bob"), totalSize: 3 << 20,
                chunkSize: 1 << 20, sha256: digest, deadline: 77)),
        .streamChunk(StreamChunk(streamID: "s1", index: 2, data: payload)),
        .streamEnd(StreamEnd(ref: 15, streamID: "s1")),
        .streamEnd(StreamEnd(ref: 15, streamID: "s1", sha256: digest)),
        .streamResume(StreamRef(ref: 16, streamID: "s1")),
        .streamStatus(StreamStatus(ref: 0, streamID: "s1", nextIndex: 2, bytes: 2 << 20)),
        .streamAbort(StreamAbort(streamID: "s1", code: .checksumMismatch, message: "bad")),
        .contextWrite(
            ContextWrite(
                ref: 17, operation: .update, id: "plan.q3", expectedVersion: 4, ttlMs: 60_000, attributes: attributes,
                body: ByteBuffer(string: #"{"goal":"ship"}"#))),
        .contextWrite(ContextWrite(ref: 18, operation: .put, id: "plan.q3", bodyStream: "s2")),
        .contextGet(ContextGet(ref: 19, id: "plan.q3", version: 3, ifNewerThan: 2)),
        .contextList(
            ContextList(
                ref: 20, kind: "plan", owner: "alice", pattern: "plan.*", prefix: "plan.",
                metadata: [MetadataEntry(key: "team", value: "core")], cursor: "plan.a", limit: 50)),
        .contextHistory(ContextQuery(ref: 21, id: "plan.q3", selector: 4)),
        .contextWatch(ContextWatch(ref: 22, target: "plan.>", start: .after, after: 9, paths: ["/goal", "/steps/0"])),
        .contextWatching(ContextWatching(ref: 22, position: 17, replayed: 3)),
        .contextUnwatch(ContextUnwatch(ref: 23, watch: 22)),
        .contextLineage(ContextQuery(ref: 24, id: "plan.q3", selector: 1, depth: 3)),
        .context(ContextReply(ref: 19, status: .body, head: head, body: payload)),
        .context(ContextReply(ref: 25, status: .streamed, head: head)),
        .contextPage(ContextPage(ref: 20, heads: [head, head], nextCursor: "plan.q3")),
        .contextEvent(
            ContextEvent(watch: 22, kind: .updated, head: head, payloadKind: .patch, payload: ByteBuffer(string: "[]"))),
        .keyPublish(KeyPublish(ref: 26, keys: keys, rotation: Array(repeating: 7, count: 64))),
        .keyFetch(KeyFetch(ref: 27, agentID: "bob")),
        .key(
            KeyInfo(
                ref: 27, agentID: "bob",
                published: PublishedKeys(
                    keys: keys, rotation: Array(repeating: 7, count: 64),
                    previousSignKey: Array(repeating: 9, count: 32),
                    revoked: true, publishedMs: 1_700_000_000_000))),
    ]

    /// Public keys with distinct bytes.
    public static let keys = PublicKeys(boxKey: Array(0..<32), signKey: Array(32..<64))

    /// Attributes with every field set.
    public static let attributes = ContextAttributes(
        kind: "plan", contentType: .json, label: "1.2.0", scope: .shared, readers: ["bob"], writers: ["carol"],
        metadata: [MetadataEntry(key: "team", value: "core")], parents: [ContextParent(id: "doc", version: 2)],
        source: "42")

    /// A head with every field set.
    public static let head = ContextHead(
        id: "plan.q3", owner: "alice", attributes: attributes, version: 4, revision: 17, checksum: digest, size: 15,
        createdMs: 1_700_000_000_000, updatedMs: 1_700_000_100_000, updatedBy: "carol", expiresMs: 1_700_000_160_000,
        state: .live)

    public static func encode(_ frame: Frame) -> ByteBuffer {
        var buffer = ByteBuffer()
        frame.encode(into: &buffer)
        return buffer
    }
}
