/// One measurement the harness makes, named on the command line as `kind:size`, and for p2p, topic
/// and broadcast `kind:size/window` for the window shape (``LoadShape``).
public enum Scenario: Sendable, Hashable {
    /// N senders, each streaming to its own receiver.
    case p2p(pairs: Int, shape: LoadShape = .open)
    /// N requesters, each with its own responder, one request in flight each.
    case requestReply(requesters: Int)
    /// N requesters sending at a fixed total rate whatever the replies do.
    case openLoop(requesters: Int, perSecond: Int)
    /// One publisher to N subscribers, through wildcard patterns.
    case topicFanout(subscribers: Int, shape: LoadShape = .open)
    /// One agent broadcasting to N others.
    case broadcast(receivers: Int, shape: LoadShape = .open)
    /// One payload of this many MiB streamed between two agents (ACB only: NATS has no streams).
    case stream(mebibytes: Int)
    /// N workers connecting, completing the handshake and closing, over and over.
    case connectStorm(workers: Int)
    /// N agents connected and silent.
    case idle(agents: Int)
    /// N senders, each sending to its own registered receiver that is offline, so every message
    /// is stored durably (ACB with PostgreSQL only); the receivers then connect and drain. `online`:
    /// the receivers are connected, and the sends ask to be durable (docs/protocol.md 5.1b).
    case durable(senders: Int, online: Bool = false)
    /// ACB's contexts beside a NATS KV bucket (`ctx-put`, `ctx-get`, `ctx-watch`, `ctx-cas`).
    case context(ContextScenario)
    /// p2p, closed-loop request/reply or a stream with every payload sealed end to end by the
    /// clients (docs/protocol.md 5.16): boxes for messages, requests and replies (against NATS
    /// too, which carries the same bytes), `crypto_secretstream` for the stream.
    indirect case sealed(Scenario)

    /// The scenarios of `make bench`, in the order they run: idle agents first, so their memory is
    /// measured on a server no earlier scenario has grown; p2p and fan-out in both shapes.
    public static let standard: [Scenario] = [
        .idle(agents: 10_000), .p2p(pairs: 10), .p2p(pairs: 10, shape: .window), .p2p(pairs: 100),
        .p2p(pairs: 100, shape: .window), .requestReply(requesters: 1), .requestReply(requesters: 10),
        .openLoop(requesters: 1, perSecond: 10_000), .topicFanout(subscribers: 100),
        .topicFanout(subscribers: 100, shape: .window), .broadcast(receivers: 100),
        .broadcast(receivers: 100, shape: .window), .connectStorm(workers: 16), .stream(mebibytes: 1_024),
    ]

    /// `acb-bench --scenarios contexts`: the context scenarios, at the sizes of their targets. Not in
    /// ``standard``: NATS needs JetStream (`nats-server -js`) for them, and committed puts mean
    /// something only with ACB on PostgreSQL.
    public static let contexts: [Scenario] = [
        .context(.put(writers: 10)), .context(.get(clients: 1)), .context(.get(clients: 10)),
        .context(.watch(watchers: 100)), .context(.cas(writers: 10)),
    ]

    /// `acb-bench --scenarios sealed`: end-to-end encryption's cost, each beside its plaintext run.
    public static let sealed: [Scenario] = [
        .p2p(pairs: 10), .sealed(.p2p(pairs: 10)), .requestReply(requesters: 1), .sealed(.requestReply(requesters: 1)),
        .stream(mebibytes: 1_024), .sealed(.stream(mebibytes: 1_024)),
    ]

    /// Named lists of scenarios, for ``list(_:)``.
    public static let sets: [String: [Scenario]] = ["standard": standard, "contexts": contexts, "sealed": sealed]

    /// Parses a comma-separated list of scenario names and set names (``sets``); nil if one is unknown.
    public static func list(_ text: String) -> [Scenario]? {
        var scenarios: [Scenario] = []
        for name in text.split(separator: ",").map(String.init) {
            if let set = sets[name] {
                scenarios += set
            } else if let scenario = Scenario(name) {
                scenarios.append(scenario)
            } else {
                return nil
            }
        }
        return scenarios
    }

    /// Parses `p2p:10`, `rr:1`, `rr-open:1:10000`, `topic:100`, `broadcast:100`, `stream:1024`,
    /// `storm:16`, `idle:10000`, `durable:10`, `durable-online:10`, or a context scenario (``ContextScenario/init(_:)``);
    /// `p2p`, `topic` and `broadcast` take the suffix `/window` for the window shape; `sealed-`
    /// before `p2p`, `rr` or `stream` seals its payloads.
    public init?(_ text: String) {
        if text.hasPrefix("sealed-") {
            guard let inner = Scenario(String(text.dropFirst("sealed-".count))) else { return nil }
            switch inner {
            case .p2p, .requestReply, .stream: self = .sealed(inner)
            default: return nil
            }
            return
        }
        if let context = ContextScenario(text) {
            self = .context(context)
            return
        }
        let (base, shape) = LoadShape.split(text)
        let parts = base.split(separator: ":").map { Int($0) }
        guard let kind = base.split(separator: ":").first, parts.count >= 2, let size = parts[1], size > 0 else {
            return nil
        }
        switch (kind, parts.count) {
        case ("p2p", 2): self = .p2p(pairs: size, shape: shape)
        case ("rr", 2): self = .requestReply(requesters: size)
        case ("rr-open", 3):
            guard let rate = parts[2], rate > 0 else { return nil }
            self = .openLoop(requesters: size, perSecond: rate)
        case ("topic", 2): self = .topicFanout(subscribers: size, shape: shape)
        case ("broadcast", 2): self = .broadcast(receivers: size, shape: shape)
        case ("stream", 2): self = .stream(mebibytes: size)
        case ("storm", 2): self = .connectStorm(workers: size)
        case ("idle", 2): self = .idle(agents: size)
        case ("durable", 2): self = .durable(senders: size)
        case ("durable-online", 2): self = .durable(senders: size, online: true)
        default: return nil
        }
        // Only the messaging scenarios have a shape.
        if shape != .open && self.shape == nil { return nil }
    }

    /// The load shape of a p2p, topic or broadcast scenario; nil for the others.
    public var shape: LoadShape? {
        switch self {
        case .p2p(_, let shape), .topicFanout(_, let shape), .broadcast(_, let shape): shape
        case .sealed(let inner): inner.shape
        default: nil
        }
    }

    /// `id` in the characters agent names, topics and file names take: `p2p:10/window` → `p2p-10-window`.
    public static func slug(_ id: String) -> String {
        String(id.map { $0 == ":" || $0 == "/" ? "-" : $0 })
    }

    /// The name `init?(_:)` parses.
    public var id: String {
        switch self {
        case .p2p(let pairs, let shape): "p2p:\(pairs)\(shape.suffix)"
        case .requestReply(let requesters): "rr:\(requesters)"
        case .openLoop(let requesters, let rate): "rr-open:\(requesters):\(rate)"
        case .topicFanout(let subscribers, let shape): "topic:\(subscribers)\(shape.suffix)"
        case .broadcast(let receivers, let shape): "broadcast:\(receivers)\(shape.suffix)"
        case .stream(let mebibytes): "stream:\(mebibytes)"
        case .connectStorm(let workers): "storm:\(workers)"
        case .idle(let agents): "idle:\(agents)"
        case .durable(let senders, let online): "durable\(online ? "-online" : ""):\(senders)"
        case .context(let context): context.id
        case .sealed(let inner): "sealed-" + inner.id
        }
    }

    public var title: String {
        switch self {
        case .p2p(let pairs, let shape): "p2p, \(pairs) pairs, \(shape.label)"
        case .requestReply(let requesters): "request/reply closed loop, \(requesters) requester(s)"
        case .openLoop(let requesters, let rate): "request/reply open loop, \(requesters) requester(s), \(rate)/s"
        case .topicFanout(let subscribers, let shape): "topic fan-out 1 → \(subscribers) (wildcards), \(shape.label)"
        case .broadcast(let receivers, let shape): "broadcast 1 → \(receivers), \(shape.label)"
        case .stream(let mebibytes): "stream of \(mebibytes) MiB"
        case .connectStorm(let workers): "connect storm, \(workers) workers"
        case .idle(let agents): "\(agents) idle agents"
        case .durable(let senders, let online):
            "durable sends to \(online ? "online" : "offline") agents, \(senders) sender(s)"
        case .context(let context): context.title
        case .sealed(let inner): inner.title + ", sealed end to end"
        }
    }

    /// Whether the scenario runs against `kind`: streams and stored messages are ACB's alone, and
    /// ACB over TLS runs what shows TLS's cost (throughput, latency, connection set-up).
    public func runs(on kind: ServerUnderTest.Kind) -> Bool {
        switch (self, kind) {
        case (.stream, let kind), (.durable, let kind), (.sealed(.stream), let kind): kind == .acb
        case (.sealed, .acbTLS): false
        case (.p2p, .acbTLS), (.requestReply, .acbTLS), (.connectStorm, .acbTLS): true
        case (_, .acbTLS): false
        default: true
        }
    }
}

/// How every scenario of a run is sized.
public struct BenchSettings: Sendable {
    /// How long each timed scenario sends.
    public var seconds = 5.0
    public var payloadBytes = 256
    /// Window shape: messages each producer may have outstanding (not yet received by all its receivers).
    public var window = 1_000
    /// Tests: each producer or requester stops after this many messages, and the run waits for them all.
    public var messageLimit: UInt64 = .max
    /// Where stream scenarios put the received file (deleted afterwards).
    public var scratchDirectory = "/tmp"
    /// Called with a one-line status about once a second.
    public var progress: (@Sendable (String) -> Void)?

    public init() {}
}
