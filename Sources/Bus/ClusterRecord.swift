public import NIOCore

/// What one node of a cluster hands another through the Kafka topic of the receiving node
/// (docs/cluster.md): a message or request for one of its agents, an answer to a request one of
/// its agents made, or a word about an agent (read your backlog, another node took it over).
///
/// The encoding is the bus's own: its length (u32), then big-endian integers, `str` (u16 length)
/// and `bytes` (u32 length), in the order of the fields below (`deadline` 0 for none). One Kafka
/// record carries one or more, back to back. Nodes of one cluster run the same build.
public struct ClusterRecord: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        /// A SEND to agent `to`, from `from`; `correlationID` is the number of the sender's session
        /// on the sending node when the message counts against its send window (0: it does not).
        case direct = 1
        /// A REQUEST to agent `to`; `correlationID` is the requester's, on the sending node.
        case request = 2
        /// The answer to request `correlationID` of the receiving node, from agent `from`.
        case response = 3
        /// Request `correlationID` of the receiving node cannot be answered: `code`, `message`.
        case requestFailed = 4
        /// A message was stored for agent `to`: its session reads its backlog.
        case backlog = 5
        /// Agent `to` opened a session on the sending node at `at` (Unix ms): an older one here ends,
        /// and the streams kept here for the agent's next session are relayed to the sending node.
        case takeover = 6
        /// A BROADCAST (`subject` empty) or PUBLISH on topic `subject` from `from`, of ``DeliveryKind``
        /// `status`, for the receiving node's sessions; answered by a `fanoutAnswer`.
        case fanout = 7
        /// How many of the receiving node's sessions took fan-out `correlationID` (`count`; for a
        /// durable one, stored it), or, none having, why (`code`, `message`; `internal`: no refusal).
        case fanoutAnswer = 8
        /// Agent `from` registered on the sending node: `payload` is its REGISTER frame.
        case registered = 9
        /// Agent `from` unregistered on the sending node.
        case unregistered = 10
        /// A CONTEXT_WRITE (`payload`, the frame) of agent `from` for the receiving node, the home
        /// of the tenant's contexts; `status` holds the agent's rights (``ContextPrincipal/rights``),
        /// `correlationID` the sending node's number for the write, which the answer carries back.
        case contextWrite = 11
        /// The answer to `contextWrite` `correlationID` of the receiving node: `payload` is the
        /// CONTEXT or ERROR frame.
        case contextWritten = 12
        /// A version of one of the tenant's contexts its home committed: `payload` is a CONTEXT
        /// frame with its head and body.
        case contextCommitted = 13
        /// The sending node became the home of the tenant's contexts: the receiving node reads them
        /// again from PostgreSQL (the previous home may have committed versions it never sent).
        case contextReload = 14
        /// A durable BROADCAST or PUBLISH, as `fanout`: each receiving session's copy is stored, and
        /// the `fanoutAnswer` counts those committed.
        case durableFanout = 15
        /// A stream from agent `from` to agent `to`, uploaded and verified on the sending node:
        /// `payload` is its STREAM_OPEN frame (with the payload's SHA-256), `correlationID` the
        /// sending node's number for it. Its `streamPart` records follow, in order.
        case streamOpen = 16
        /// Part `count` (from 0, 512 KiB each) of stream `correlationID` of the sending node: `payload`.
        case streamPart = 17
        /// Stream `correlationID` of the receiving node reached its receiver's session (`code`
        /// `internal`, no message), or could not (`code`, `message`).
        case streamDelivered = 18
        /// Agent `to`'s session on the sending node had a full queue when a SEND from the receiving
        /// node came. The receiving node refuses SENDs to it with `overloaded` for `count` ms, as
        /// the agent's own node would.
        case receiverFull = 19
        /// Agent `from` resumes its upload `subject` at the sending node: the receiving node hands
        /// it over if it holds it parked (its connection broke there), answering with an
        /// `uploadFound` under `correlationID`.
        case uploadFetch = 20
        /// The answer to `uploadFetch` `correlationID` of the receiving node: `payload` is the
        /// upload's STREAM_OPEN frame and `count` its chunks stored, whose bytes follow in
        /// `uploadPart` records; or, `payload` empty, the sending node holds no such upload.
        case uploadFound = 21
        /// Part `count` (from 0, 512 KiB each) of the upload handed over under `correlationID` of
        /// the receiving node: `payload`.
        case uploadPart = 22
        /// The sending node now has sessions subscribed to pattern `subject` of the tenant
        /// (`status` 1, answered by an `interestApplied` with the same `correlationID`), or none
        /// any more (0).
        case interest = 23
        /// Every pattern the sending node's sessions subscribe to: `payload` holds, for each, the
        /// tenant and the pattern (`str` each). `status` 1 asks for the receiving node's in return.
        case interestSet = 24
        /// The sending node applied `interest` record `correlationID` of the receiving node.
        case interestApplied = 25
        /// `count` of the SENDs of session `correlationID` of the receiving node left the queues of
        /// their receivers on the sending node (taken, or stored there): its send window gets them
        /// back.
        case credit = 26
    }

    /// Ids made by one node are congruent to its id slot modulo this: at most this many nodes live
    /// at once in one cluster.
    public static let idStride: UInt64 = 256

    public var kind: Kind
    /// The node that sent the record (where a request's answer goes).
    public var node: String
    public var tenant: String
    public var to: String
    public var from: String
    /// A fan-out's topic.
    public var subject: String
    public var correlationID: UInt64
    /// A message's or request's deadline (Unix ms), if any.
    public var deadline: UInt64?
    /// Unix ms of what the record reports (a takeover's session opening).
    public var at: UInt64
    /// A response's ``ReplyStatus`` raw value, a fan-out's ``DeliveryKind``.
    public var status: UInt8
    /// How many sessions took a fan-out.
    public var count: UInt32
    /// A failed request's error.
    public var code: ErrorCode
    public var message: String
    public var payload: ByteBuffer

    public init(
        kind: Kind, node: String, tenant: String, to: String = "", from: String = "", subject: String = "",
        correlationID: UInt64 = 0, deadline: UInt64? = nil, at: UInt64 = 0, status: UInt8 = 0, count: UInt32 = 0,
        code: ErrorCode = .internal, message: String = "", payload: ByteBuffer = ByteBuffer()
    ) {
        self.kind = kind
        self.node = node
        self.tenant = tenant
        self.to = to
        self.from = from
        self.subject = subject
        self.correlationID = correlationID
        self.deadline = deadline
        self.at = at
        self.status = status
        self.count = count
        self.code = code
        self.message = message
        self.payload = payload
    }

    /// Appends the record to `value`, a Kafka record's value that carries one or more of them, each
    /// behind its length (u32).
    public func encode(into value: inout ByteBuffer) {
        let start = value.writerIndex
        value.writeInteger(UInt32(0))
        value.writeInteger(kind.rawValue)
        for text in [node, tenant, to, from, subject] { value.writeWireString(text) }
        value.writeMultipleIntegers(correlationID, deadline ?? 0, at, status, count, code.rawValue)
        value.writeWireMessage(message)
        value.writeWireBytes(payload)
        value.setInteger(UInt32(value.writerIndex - start - 4), at: start)
    }

    /// Decodes the records of a value made by ``encode(into:)``, in order.
    /// - Throws: ``ErrorCode/badFrame`` for anything else.
    public static func decodeAll(_ bytes: UnsafeRawBufferPointer) throws(BusError) -> [ClusterRecord] {
        let buffer = ByteBuffer(bytes: bytes)
        let decoded = buffer.withUnsafeReadableBytes { raw -> Result<[ClusterRecord], BusError> in
            var reader = WireReader(buffer, bytes: raw)
            var records: [ClusterRecord] = []
            do throws(BusError) {
                while !reader.isAtEnd {
                    let length = Int(try reader.u32("length"))
                    let end = reader.offset + length
                    var record = try decode(&reader)
                    guard reader.offset == end else { throw BusError(.badFrame, "a cluster record's length is wrong") }
                    if length + 4 < bytes.count {
                        // A payload of its own: one that stays queued must not keep the others' alive.
                        record.payload = ByteBuffer(bytes: record.payload.readableBytesView)
                    }
                    records.append(record)
                }
                return .success(records)
            } catch {
                return .failure(error)
            }
        }
        return try decoded.get()
    }

    private static func decode(_ reader: inout WireReader) throws(BusError) -> ClusterRecord {
        guard let kind = Kind(rawValue: try reader.u8("kind")) else {
            throw BusError(.badFrame, "unknown cluster record kind")
        }
        let node = try reader.string("node")
        let tenant = try reader.string("tenant")
        let to = try reader.string("to")
        let from = try reader.string("from")
        let subject = try reader.string("subject")
        let correlationID = try reader.u64("correlation_id")
        let deadline = try reader.u64("deadline")
        let at = try reader.u64("at")
        let status = try reader.u8("status")
        let count = try reader.u32("count")
        guard let code = ErrorCode(rawValue: try reader.u16("code")) else {
            throw BusError(.badFrame, "unknown error code in a cluster record")
        }
        let message = try reader.string("message")
        let payload = try reader.bytes("payload")
        return ClusterRecord(
            kind: kind, node: node, tenant: tenant, to: to, from: from, subject: subject,
            correlationID: correlationID, deadline: deadline == 0 ? nil : deadline, at: at, status: status,
            count: count, code: code, message: message, payload: payload)
    }
}
