public import NIOCore

/// The `flags` byte that may end SEND, REQUEST, BROADCAST and PUBLISH (docs/protocol.md 4.11).
public struct MessageFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Stored in PostgreSQL before OK, and tracked there until the receiver acknowledges it (5.1b).
    public static let durable = MessageFlags(rawValue: 1)
    /// Every flag this version knows; a frame with another bit set is refused.
    public static let known: MessageFlags = [.durable]

    /// Reads the optional last field: absent (the body ended) means no flags.
    init(readingOptional r: inout WireReader) throws(BusError) {
        self.init(rawValue: r.isAtEnd ? 0 : try r.u8("flags"))
    }

    /// Writes the field only when a flag is set: a frame without flags is the same as before version 3.
    func write(to b: inout ByteBuffer) {
        if !isEmpty { b.writeInteger(rawValue) }
    }
}

/// SEND and REQUEST: a payload for one agent, named by id or by capability.
public struct Send: FrameBody {
    public var ref: UInt64
    public var target: Target
    /// Empty for none; otherwise retries with the same key within the window are answered, not repeated.
    public var idempotencyKey: String
    /// Absolute deadline in Unix milliseconds, nil for none.
    public var deadline: UInt64?
    public var payload: ByteBuffer
    public var flags: MessageFlags

    public init(
        ref: UInt64, target: Target, idempotencyKey: String = "", deadline: UInt64? = nil,
        payload: ByteBuffer, flags: MessageFlags = []
    ) {
        self.ref = ref
        self.target = target
        self.idempotencyKey = idempotencyKey
        self.deadline = deadline
        self.payload = payload
        self.flags = flags
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), target: try Target(reading: &r), idempotencyKey: try r.string("idempotency_key"),
            deadline: try r.u64("deadline_ms").deadlineFromWire, payload: try r.bytes("payload"),
            flags: try MessageFlags(readingOptional: &r))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        target.write(to: &b)
        b.writeWireString(idempotencyKey)
        b.writeInteger(deadline.wireDeadline)
        b.writeWireBytes(payload)
        flags.write(to: &b)
    }
}

/// BROADCAST (topic empty) and PUBLISH (topic set): a payload for many agents of the tenant.
public struct Fanout: FrameBody {
    public var ref: UInt64
    /// The topic of a PUBLISH; always empty in a BROADCAST.
    public var topic: String
    public var deadline: UInt64?
    public var payload: ByteBuffer
    public var flags: MessageFlags

    public init(
        ref: UInt64, topic: String = "", deadline: UInt64? = nil, payload: ByteBuffer, flags: MessageFlags = []
    ) {
        self.ref = ref
        self.topic = topic
        self.deadline = deadline
        self.payload = payload
        self.flags = flags
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), topic: try r.string("topic"),
            deadline: try r.u64("deadline_ms").deadlineFromWire, payload: try r.bytes("payload"),
            flags: try MessageFlags(readingOptional: &r))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(topic)
        b.writeInteger(deadline.wireDeadline)
        b.writeWireBytes(payload)
        flags.write(to: &b)
    }
}

/// SUBSCRIBE and UNSUBSCRIBE: a topic pattern (`*` one token, `>` the rest).
public struct PatternCommand: FrameBody {
    public var ref: UInt64
    public var pattern: String

    public init(ref: UInt64, pattern: String) {
        self.ref = ref
        self.pattern = pattern
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"), pattern: try r.string("pattern"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(pattern)
    }
}

/// DELIVER: the server hands a message to its receiver, who must ACK `deliveryID`.
public struct Deliver: FrameBody {
    /// Per session, increasing by one from 1, so cumulative ACKs are possible.
    public var deliveryID: UInt64
    public var kind: DeliveryKind
    /// The sending agent's id (same tenant as the receiver).
    public var from: String
    /// The topic of a topic delivery; empty otherwise.
    public var subject: String
    /// For a request delivery, the id to put in REPLY; 0 otherwise.
    public var correlationID: UInt64
    public var deadline: UInt64?
    /// 1 on first delivery, then 2, 3, … on redeliveries.
    public var attempt: UInt16
    public var payload: ByteBuffer
    /// Version 3 only (nil: the field is absent): the id of the message's stored copy, the same on
    /// every redelivery, even after a restart; 0 for a message held in memory only.
    public var messageID: UInt64?

    public init(
        deliveryID: UInt64, kind: DeliveryKind, from: String, subject: String = "", correlationID: UInt64 = 0,
        deadline: UInt64? = nil, attempt: UInt16 = 1, payload: ByteBuffer, messageID: UInt64? = nil
    ) {
        self.deliveryID = deliveryID
        self.kind = kind
        self.from = from
        self.subject = subject
        self.correlationID = correlationID
        self.deadline = deadline
        self.attempt = attempt
        self.payload = payload
        self.messageID = messageID
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let id = try r.u64("delivery_id")
        let raw = try r.u8("kind")
        guard let kind = DeliveryKind(rawValue: raw) else { throw BusError(.badFrame, "unknown delivery kind \(raw)") }
        self.init(
            deliveryID: id, kind: kind, from: try r.string("from"), subject: try r.string("subject"),
            correlationID: try r.u64("correlation_id"), deadline: try r.u64("deadline_ms").deadlineFromWire,
            attempt: try r.u16("attempt"), payload: try r.bytes("payload"),
            messageID: r.isAtEnd ? nil : try r.u64("message_id"))
    }

    public func write(to b: inout ByteBuffer) {
        // Neighbouring integers in one write: one capacity check instead of one each (hot path).
        b.writeMultipleIntegers(deliveryID, kind.rawValue)
        b.writeWireString(from)
        b.writeWireString(subject)
        b.writeMultipleIntegers(correlationID, deadline.wireDeadline, attempt)
        b.writeWireBytes(payload)
        if let messageID { b.writeInteger(messageID) }
    }
}

/// ACK (and NACK): the receiver is done with `deliveryID`, or with every id up to it when cumulative.
/// A NACK asks for redelivery later; a delivery NACKed or unacknowledged too often is dead-lettered.
public struct Ack: FrameBody {
    public var deliveryID: UInt64
    public var cumulative: Bool

    public init(deliveryID: UInt64, cumulative: Bool = false) {
        self.deliveryID = deliveryID
        self.cumulative = cumulative
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let id = try r.u64("delivery_id")
        let flag = try r.u8("cumulative")
        guard flag <= 1 else { throw BusError(.badFrame, "cumulative must be 0 or 1") }
        self.init(deliveryID: id, cumulative: flag == 1)
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(deliveryID)
        b.writeInteger(UInt8(cumulative ? 1 : 0))
    }
}
