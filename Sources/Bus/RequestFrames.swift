public import NIOCore

/// Whether a reply carries a result or the responder's own error.
public enum ReplyStatus: UInt8, Sendable {
    case ok = 0
    case error = 1
}

/// REPLY: the responder answers the request delivered with `correlationID`.
public struct Reply: FrameBody {
    public var correlationID: UInt64
    public var status: ReplyStatus
    public var payload: ByteBuffer

    public init(correlationID: UInt64, status: ReplyStatus = .ok, payload: ByteBuffer) {
        self.correlationID = correlationID
        self.status = status
        self.payload = payload
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let id = try r.u64("correlation_id")
        let raw = try r.u8("status")
        guard let status = ReplyStatus(rawValue: raw) else { throw BusError(.badFrame, "unknown reply status \(raw)") }
        self.init(correlationID: id, status: status, payload: try r.bytes("payload"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(correlationID)
        b.writeInteger(status.rawValue)
        b.writeWireBytes(payload)
    }
}

/// RESPONSE: the server hands the requester the reply to its REQUEST `ref`.
public struct Response: FrameBody {
    public var ref: UInt64
    public var from: String
    public var status: ReplyStatus
    public var payload: ByteBuffer

    public init(ref: UInt64, from: String, status: ReplyStatus = .ok, payload: ByteBuffer) {
        self.ref = ref
        self.from = from
        self.status = status
        self.payload = payload
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let from = try r.string("from")
        let raw = try r.u8("status")
        guard let status = ReplyStatus(rawValue: raw) else { throw BusError(.badFrame, "unknown reply status \(raw)") }
        self.init(ref: ref, from: from, status: status, payload: try r.bytes("payload"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(from)
        b.writeInteger(status.rawValue)
        b.writeWireBytes(payload)
    }
}
