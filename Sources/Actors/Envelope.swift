public import Bus
public import NIOCore

/// What one session hands another through its ``Mailbox``.
public enum Envelope: Sendable {
    /// A message to deliver (direct, broadcast, topic or request).
    case message(Message)
    /// A verified stream upload to deliver.
    case stream(CompletedStream)
    /// The reply to the receiver's own pending request `local`.
    case response(local: UInt32, from: String, status: ReplyStatus, payload: ByteBuffer)
    /// The receiver's pending request `local` cannot be answered (its responder left).
    case requestFailed(local: UInt32, BusError)

    /// Delivery attempts already made (0 for answers, which are not deliveries).
    var attempts: UInt16 {
        switch self {
        case .message(let message): message.attempts
        case .stream(let stream): stream.attempts
        case .response, .requestFailed: 0
        }
    }

    /// The same envelope, recording `attempts` delivery attempts made, for another attempt: its
    /// sender's credit came back when it was first taken, and must not come back again.
    func with(attempts: UInt16) -> Envelope {
        switch self {
        case .message(var message):
            message.attempts = attempts
            message.credit = nil
            return .message(message)
        case .stream(var stream):
            stream.attempts = attempts
            return .stream(stream)
        case .response, .requestFailed:
            return self
        }
    }

    /// The protocol 2 sender's window a message counts against until it is first taken.
    var credit: CreditOwner? {
        switch self {
        case .message(let message): message.credit
        case .stream, .response, .requestFailed: nil
        }
    }

    /// The id of a stored message's durable copy, 0 for anything held in memory only.
    var storedID: UInt64 {
        if case .message(let message) = self { message.storedID } else { 0 }
    }

    var isStream: Bool {
        if case .stream = self { true } else { false }
    }

    /// Whether this envelope rides the control lane (answers to the receiver's own requests).
    var isControl: Bool {
        switch self {
        case .message, .stream: false
        case .response, .requestFailed: true
        }
    }
}

/// A message on its way to one receiver.
public struct Message: Sendable {
    public var kind: DeliveryKind
    public var from: String
    public var subject: String
    /// For requests: the requester's session and pending id, see ``CorrelationTable/wireID(session:local:)``.
    public var correlationID: UInt64
    public var deadline: UInt64?
    public var payload: ByteBuffer
    /// Delivery attempts already made (0 for a new message).
    public var attempts: UInt16 = 0
    /// The id of its durable copy (``MessageStore``), 0 for a message held in memory only.
    public var storedID: UInt64 = 0
    /// The protocol 2 sender's window it counts against until a receiver takes it.
    var credit: CreditOwner?

    public init(
        kind: DeliveryKind, from: String, subject: String = "", correlationID: UInt64 = 0,
        deadline: UInt64?, payload: ByteBuffer
    ) {
        self.kind = kind
        self.from = from
        self.subject = subject
        self.correlationID = correlationID
        self.deadline = deadline
        self.payload = payload
    }
}

extension Message {
    /// A stored message, handed out from its receiver's backlog.
    init(_ stored: StoredMessage) {
        self.init(
            kind: DeliveryKind(rawValue: stored.kind) ?? .direct, from: stored.from, subject: stored.subject,
            deadline: stored.deadline, payload: ByteBuffer(bytes: stored.payload))
        attempts = stored.attempts
        storedID = stored.id
    }
}
