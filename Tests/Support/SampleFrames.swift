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
        .subscribe(PatternCommand(ref: 8, pattern: "news.*")),
        .unsubscribe(PatternCommand(ref: 9, pattern: "news.>")),
        .deliver(
            Deliver(
                deliveryID: 11, kind: .topic, from: "alice", subject: "news.eu", correlationID: 0,
                deadline: 99, attempt: 2, payload: payload)),
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
        .streamEnd(StreamRef(ref: 15, streamID: "s1")),
        .streamResume(StreamRef(ref: 16, streamID: "s1")),
        .streamStatus(StreamStatus(ref: 0, streamID: "s1", nextIndex: 2, bytes: 2 << 20)),
        .streamAbort(StreamAbort(streamID: "s1", code: .checksumMismatch, message: "bad")),
    ]

    public static func encode(_ frame: Frame) -> ByteBuffer {
        var buffer = ByteBuffer()
        frame.encode(into: &buffer)
        return buffer
    }
}
