import NIOCore

/// The NATS client protocol (text commands, https://docs.nats.io/reference/reference-protocols/nats-protocol),
/// shaped like an ACB agent: each connection subscribes to its own direct, reply and service subjects.
struct NATSWire: BenchWire {
    /// Subscription ids of the subjects every connection has.
    private enum Sid: Int {
        case direct = 1, inbox, service, broadcast
    }

    private let name: String
    private var ready = false
    private var nextSid = Sid.broadcast.rawValue + 1
    /// The context scenarios' JetStream KV commands and inboxes.
    private var kv: NATSKV

    init(name: String, credential: String) {
        self.name = name
        self.kv = NATSKV(name: name)
    }

    func handshake(into out: inout ByteBuffer) {
        out.writeString(
            #"CONNECT {"verbose":false,"pedantic":false,"echo":false,"headers":true,"lang":"swift","version":"1","#
                + #""name":""# + name + "\"}\r\n")
        out.writeString("SUB p2p.\(name) \(Sid.direct.rawValue)\r\n")
        out.writeString("SUB _INBOX.\(name) \(Sid.inbox.rawValue)\r\n")
        out.writeString("SUB svc.\(name) \(Sid.service.rawValue)\r\n")
        out.writeString("SUB all.broadcast \(Sid.broadcast.rawValue)\r\n")
        out.writeString("PING\r\n")
    }

    mutating func parse(_ input: inout ByteBuffer, into events: inout [WireEvent], out: inout ByteBuffer) throws {
        while let newline = input.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let line = input.readableBytesView[input.readerIndex..<newline]
            let lineBytes = newline - input.readerIndex + 1
            let hasHeaders = line.starts(with: "HMSG ".utf8)
            if hasHeaders || line.starts(with: "MSG ".utf8) {
                let fields = line.dropFirst(hasHeaders ? 5 : 4).dropLast()
                let message = try Self.messageLine(fields, hasHeaders: hasHeaders)
                guard input.readableBytes >= lineBytes + message.size + 2 else { return }
                input.moveReaderIndex(forwardBy: lineBytes)
                let headers = input.readSlice(length: message.headerSize)!
                let payload = input.readSlice(length: message.size - message.headerSize)!
                input.moveReaderIndex(forwardBy: 2)
                if kv.take(sid: message.sid, reply: message.reply, headers: headers, payload: payload, into: &events) {
                    continue
                }
                switch Sid(rawValue: message.sid) {
                case .inbox: events.append(.reply(payload))
                case .service:
                    events.append(.message(payload, reply: message.reply.map { ReplyHandle(subject: $0) }))
                default: events.append(.message(payload, reply: nil))
                }
                continue
            }
            input.moveReaderIndex(forwardBy: lineBytes)
            if line.starts(with: "PING".utf8) {
                out.writeString("PONG\r\n")
            } else if line.starts(with: "PONG".utf8) {
                events.append(ready ? .synced : .ready)
                ready = true
            } else if line.starts(with: "-ERR".utf8) {
                // A fatal -ERR is followed by the server closing the connection, reported then.
                events.append(.refused(String(decoding: line.dropFirst(5).dropLast(), as: UTF8.self)))
            }
        }
    }

    func readComplete(out: inout ByteBuffer) {}

    func send(to agent: String, _ payload: ByteBuffer, durable: Bool, into out: inout ByteBuffer) {
        precondition(!durable, "NATS core stores nothing: durable scenarios run on ACB only")
        Self.pub("p2p." + agent, reply: nil, payload, into: &out)
    }

    func request(to agent: String, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Self.pub("svc." + agent, reply: "_INBOX." + name, payload, into: &out)
    }

    func reply(_ handle: ReplyHandle, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Self.pub(handle.subject, reply: nil, payload, into: &out)
    }

    func publish(topic: String, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        Self.pub(topic, reply: nil, payload, into: &out)
    }

    func broadcast(_ payload: ByteBuffer, into out: inout ByteBuffer) {
        Self.pub("all.broadcast", reply: nil, payload, into: &out)
    }

    mutating func subscribe(_ pattern: String, into out: inout ByteBuffer) {
        out.writeString("SUB \(pattern) \(nextSid)\r\nPING\r\n")
        nextSid += 1
    }

    mutating func context(_ command: ContextCommand, into out: inout ByteBuffer) {
        kv.command(command, into: &out)
    }

    var keepAliveInterval: TimeAmount? { nil }

    /// NATS runs what follows CONNECT in order.
    var pipelinesSetup: Bool { true }

    /// NATS grants no credit: a publisher is held back by its socket alone.
    var sendCredit: Int { .max }

    func keepAlive(into out: inout ByteBuffer) {
        out.writeString("PING\r\n")
    }

    static func pub(_ subject: String, reply: String?, _ payload: ByteBuffer, into out: inout ByteBuffer) {
        out.writeString("PUB ")
        out.writeString(subject)
        if let reply {
            out.writeString(" ")
            out.writeString(reply)
        }
        out.writeString(" \(payload.readableBytes)\r\n")
        out.writeImmutableBuffer(payload)
        out.writeString("\r\n")
    }

    /// `subject sid [reply-to] size` of a MSG line, `subject sid [reply-to] header-size size` of an
    /// HMSG line (`size` counts the headers too; `headerSize` is 0 for MSG).
    private static func messageLine(_ line: ByteBufferView.SubSequence, hasHeaders: Bool) throws
        -> (sid: Int, reply: String?, headerSize: Int, size: Int)
    {
        let fields = line.split(separator: UInt8(ascii: " "))
        let sizes = hasHeaders ? 2 : 1
        guard fields.count == 2 + sizes || fields.count == 3 + sizes, let sid = decimal(fields[1]),
            let size = decimal(fields.last!), let headerSize = hasHeaders ? decimal(fields[fields.count - 2]) : 0,
            headerSize <= size
        else { throw WireError("bad MSG line: \(String(decoding: line, as: UTF8.self))") }
        return (sid, fields.count == 3 + sizes ? String(decoding: fields[2], as: UTF8.self) : nil, headerSize, size)
    }

    private static func decimal(_ digits: some Collection<UInt8>) -> Int? {
        var value = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            value = value * 10 + Int(digit - UInt8(ascii: "0"))
        }
        return digits.isEmpty ? nil : value
    }
}
