import Bus
import NIOCore

/// ACB's wire protocol (docs/protocol.md), through the `Bus` codec the server itself uses. Version 2:
/// setup commands pipelined behind HELLO, sends within the CREDIT the bus grants, and their
/// successes settled by CONFIRM. Version 1, which older revisions of the bus speak alone: setup
/// after WELCOME, no credit, an OK or ERROR for every send.
struct ACBWire: BenchWire {
    /// The protocol version spoken: 1 or 2.
    let version: UInt16
    private let name: String
    private let token: String
    private var nextRef: UInt64 = 1
    /// Refs of subscriptions awaiting their OK.
    private var subscribing: Set<UInt64> = []
    /// SEND, BROADCAST and PUBLISH awaiting their answer.
    private var pending = PendingRefs()
    /// Highest delivery received and not yet acknowledged.
    private var unacked: UInt64?
    /// Half the heartbeat interval WELCOME announced.
    private(set) var keepAliveInterval: TimeAmount?
    /// Protocol 2: CREDIT's grants less what was sent, refusals given back.
    private var credit = 0

    init(name: String, credential: String, version: UInt16 = 2) {
        self.name = name
        self.token = credential
        self.version = version
    }

    func handshake(into out: inout ByteBuffer) {
        Frame.hello(Hello(version: version, token: token, clientName: name)).encode(into: &out)
    }

    /// Version 1 refuses frames before WELCOME.
    var pipelinesSetup: Bool { version >= 2 }

    /// Unlimited under version 1, which grants no credit.
    var sendCredit: Int { version >= 2 ? credit : .max }

    mutating func parse(_ input: inout ByteBuffer, into events: inout [WireEvent], out: inout ByteBuffer) throws {
        while let frame = try Frame.decode(from: &input, maxFrameBytes: UInt32.max >> 1) {
            switch frame {
            case .welcome(let welcome):
                keepAliveInterval = .milliseconds(Int64(welcome.limits.heartbeatIntervalMs) / 2)
                events.append(.ready)
            case .credit(let grant):
                credit += Int(grant.grant)
                events.append(.credited)
            case .confirm(let confirm):
                let count = pending.confirm(through: confirm.ref)
                if count > 0 { events.append(.confirmed(count)) }
            case .ok(let ok):
                if subscribing.remove(ok.ref) != nil {
                    events.append(.synced)
                } else if pending.answer(ok.ref) {
                    events.append(.accepted(recipients: ok.recipients))
                }
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
            case .error(let error):
                // A refused send's credit comes back with its ERROR.
                if pending.answer(error.ref) { credit += 1 }
                events.append(.refused(error.error.code.name))
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

    mutating func send(to agent: String, _ payload: ByteBuffer, durable: Bool, into out: inout ByteBuffer) {
        Frame.send(
            Send(ref: takeMessageRef(), target: .agent(agent), payload: payload, flags: durable ? .durable : [])
        ).encode(into: &out)
    }

    mutating func request(to agent: String, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.request(Send(ref: takeRef(), target: .agent(agent), payload: payload)).encode(into: &out)
    }

    mutating func reply(_ handle: ReplyHandle, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.reply(Reply(correlationID: handle.correlationID, payload: payload)).encode(into: &out)
    }

    mutating func publish(topic: String, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.publish(Fanout(ref: takeMessageRef(), topic: topic, payload: payload)).encode(into: &out)
    }

    mutating func broadcast(_ payload: ByteBuffer, into out: inout ByteBuffer) {
        Frame.broadcast(Fanout(ref: takeMessageRef(), payload: payload)).encode(into: &out)
    }

    mutating func subscribe(_ pattern: String, into out: inout ByteBuffer) {
        Frame.subscribe(PatternCommand(ref: takeSetupRef(), pattern: pattern)).encode(into: &out)
    }

    func keepAlive(into out: inout ByteBuffer) {
        Frame.heartbeat(Heartbeat(readiness: .ready)).encode(into: &out)
    }

    /// Refs count up from 1 for every command, so those of SEND, BROADCAST and PUBLISH increase as
    /// protocol 2 requires.
    mutating func takeRef() -> UInt64 {
        defer { nextRef += 1 }
        return nextRef
    }

    /// A ref for a SEND, BROADCAST or PUBLISH: it takes one credit (protocol 2), and awaits its answer
    /// or a CONFIRM.
    private mutating func takeMessageRef() -> UInt64 {
        let ref = takeRef()
        pending.sent(ref)
        credit -= 1
        return ref
    }

    /// A ref for a setup command (a subscription, a context watch): its OK (CONTEXT_WATCHING) arrives
    /// as ``WireEvent/synced``.
    mutating func takeSetupRef() -> UInt64 {
        let ref = takeRef()
        subscribing.insert(ref)
        return ref
    }
}
