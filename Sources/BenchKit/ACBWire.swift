import Bus
import NIOCore

/// ACB's wire protocol v1 (docs/protocol.md), through the `Bus` codec the server itself uses.
struct ACBWire: BenchWire {
    private let name: String
    private let token: String
    private var nextRef: UInt64 = 1
    /// Refs of subscriptions awaiting their OK.
    private var subscribing: Set<UInt64> = []
    /// Highest delivery received and not yet acknowledged.
    private var unacked: UInt64?
    /// Half the heartbeat interval WELCOME announced.
    private(set) var keepAliveInterval: TimeAmount?

    init(name: String, credential: String) {
        self.name = name
        self.token = credential
    }

    func handshake(into out: inout ByteBuffer) {
        Frame.hello(Hello(token: token, clientName: name)).encode(into: &out)
    }

    mutating func parse(_ input: inout ByteBuffer, into events: inout [WireEvent], out: inout ByteBuffer) throws {
        while let frame = try Frame.decode(from: &input, maxFrameBytes: UInt32.max >> 1) {
            switch frame {
            case .welcome(let welcome):
                keepAliveInterval = .milliseconds(Int64(welcome.limits.heartbeatIntervalMs) / 2)
                events.append(.ready)
            case .ok(let ok):
                events.append(subscribing.remove(ok.ref) == nil ? .accepted(recipients: ok.recipients) : .synced)
            case .deliver(let deliver):
                unacked = deliver.deliveryID
                let reply = deliver.kind == .request ? ReplyHandle(correlationID: deliver.correlationID) : nil
                events.append(.message(deliver.payload, reply: reply))
            case .contextWatching(let watching):
                subscribing.remove(watching.ref)
                events.append(.synced)
            case .response(let response): events.append(.reply(response.payload))
            case .context(let reply): events.append(Self.event(reply))
            case .contextEvent(let change): events.append(Self.event(change))
            case .error(let error): events.append(.refused(error.error.code.name))
            case .goAway(let goAway): events.append(.closed(goAway.code.name))
            default: break
            }
        }
    }

    mutating func readComplete(out: inout ByteBuffer) {
        guard let last = unacked else { return }
        Frame.ack(Ack(deliveryID: last, cumulative: true)).encode(into: &out)
        unacked = nil
    }

    mutating func send(to agent: String, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.send(Send(ref: takeRef(), target: .agent(agent), payload: payload)).encode(into: &out)
    }

    mutating func request(to agent: String, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.request(Send(ref: takeRef(), target: .agent(agent), payload: payload)).encode(into: &out)
    }

    mutating func reply(_ handle: ReplyHandle, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.reply(Reply(correlationID: handle.correlationID, payload: payload)).encode(into: &out)
    }

    mutating func publish(topic: String, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.publish(Fanout(ref: takeRef(), topic: topic, payload: payload)).encode(into: &out)
    }

    mutating func broadcast(_ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.broadcast(Fanout(ref: takeRef(), payload: payload)).encode(into: &out)
    }

    mutating func subscribe(_ pattern: String, into out: inout ByteBuffer) {
        Frame.subscribe(PatternCommand(ref: takeSetupRef(), pattern: pattern)).encode(into: &out)
    }

    func keepAlive(into out: inout ByteBuffer) {
        Frame.heartbeat(Heartbeat(readiness: .ready)).encode(into: &out)
    }

    mutating func takeRef() -> UInt64 {
        defer { nextRef += 1 }
        return nextRef
    }

    /// A ref for a setup command (a subscription, a context watch): its OK (CONTEXT_WATCHING) arrives
    /// as ``WireEvent/synced``.
    mutating func takeSetupRef() -> UInt64 {
        let ref = takeRef()
        subscribing.insert(ref)
        return ref
    }
}
