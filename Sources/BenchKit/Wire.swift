import NIOCore

/// What a benchmark connection hears from its server, in the same words for ACB and NATS.
enum WireEvent {
    /// The handshake finished: the connection may send.
    case ready
    /// A setup command (a subscription) took effect.
    case synced
    /// A message for this connection; `reply` is set when it is a request to answer.
    case message(ByteBuffer, reply: ReplyHandle?)
    /// The answer to a request this connection made.
    case reply(ByteBuffer)
    /// The server accepted one send for this many receivers, in an answer of its own: an OK (ACB
    /// protocol 2 answers so only a SEND it stored and a fan-out that skipped a full receiver).
    case accepted(recipients: UInt32)
    /// ACB's CONFIRM: this many more sends succeeded, each reaching every receiver it was for.
    case confirmed(Int)
    /// ACB's CREDIT: the server granted more send window (``BenchWire/sendCredit``).
    case credited
    /// A context write took effect as this version (NATS KV: the stream sequence, the key's revision).
    case committed(version: UInt64)
    /// A context read found this version and body.
    case value(version: UInt64, ByteBuffer)
    /// A watch saw the context change to this version, with its body.
    case changed(version: UInt64, ByteBuffer)
    /// The server refused one command, with its own code.
    case refused(String)
    /// The connection ended or the server reported a connection-level error (GOAWAY, NATS -ERR).
    case closed(String)
}

/// Where the answer to a request goes: ACB names it by correlation id, NATS by reply subject.
struct ReplyHandle {
    var correlationID: UInt64 = 0
    var subject = ""
}

/// One server's client protocol, as much of it as the harness speaks.
///
/// Every agent of the harness can receive direct messages, requests and replies by its name, and
/// subscribe to topic patterns; each method appends the bytes of one command to `out`.
protocol BenchWire: SendableMetatype {
    /// The bytes that open the connection.
    func handshake(into out: inout ByteBuffer)
    /// Whether subscriptions may follow the handshake at once (NATS, ACB protocol 2), or must wait
    /// for its answer, ``WireEvent/ready`` (ACB protocol 1).
    var pipelinesSetup: Bool { get }
    /// Consumes complete server frames from `input` into `events`, writing protocol answers
    /// (PONG) to `out`; leaves a partial frame in `input`.
    mutating func parse(_ input: inout ByteBuffer, into events: inout [WireEvent], out: inout ByteBuffer) throws
    /// Called after each read batch: ACB acknowledges what it received, cumulatively.
    mutating func readComplete(out: inout ByteBuffer)
    /// A direct message; `durable` (ACB only) asks the bus to store it before answering.
    mutating func send(to agent: String, _ payload: ByteBuffer, durable: Bool, into out: inout ByteBuffer)
    mutating func request(to agent: String, _ payload: ByteBuffer, into out: inout ByteBuffer)
    mutating func reply(_ handle: ReplyHandle, _ payload: ByteBuffer, into out: inout ByteBuffer)
    mutating func publish(topic: String, _ payload: ByteBuffer, into out: inout ByteBuffer)
    /// Sends to every other agent (NATS: every agent subscribes to one broadcast subject).
    mutating func broadcast(_ payload: ByteBuffer, into out: inout ByteBuffer)
    /// Subscribes; the server's confirmation arrives as ``WireEvent/synced``.
    mutating func subscribe(_ pattern: String, into out: inout ByteBuffer)
    /// A context operation (ACB contexts, NATS KV); ``ContextCommand`` says how each is answered.
    mutating func context(_ command: ContextCommand, into out: inout ByteBuffer)
    /// Tells the server the connection is alive (ACB closes silent sessions).
    func keepAlive(into out: inout ByteBuffer)
    /// How often a silent connection must call ``keepAlive(into:)``, as the server asked in its
    /// handshake; nil when the server keeps connections alive itself (NATS pings its clients).
    var keepAliveInterval: TimeAmount? { get }
    /// How many more SEND, BROADCAST and PUBLISH the server's credit allows now (ACB protocol 2:
    /// CREDIT's grants less what was sent, refusals given back); `Int.max` for NATS and ACB protocol
    /// 1, which grant none.
    var sendCredit: Int { get }
}

/// A bad answer from the server under test.
struct WireError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
