public import Bus
public import NIOCore

/// What one session hands another through its ``Mailbox``.
public enum Envelope: Sendable {
    /// A message to deliver (direct, broadcast, topic or request).
    case message(Message)
    /// A verified stream upload to deliver.
    indirect case stream(CompletedStream)
    /// The reply to the receiver's own pending request `local`.
    indirect case response(local: UInt32, from: String, status: ReplyStatus, payload: ByteBuffer)
    /// The receiver's pending request `local` cannot be answered (its responder left).
    indirect case requestFailed(local: UInt32, BusError)

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
        case .message(let message):
            return .message(message.retried(attempts: attempts))
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

    /// A stored message read back from the backlog (a page's), whose settling frees room for the
    /// next page; not a durable message placed in the mailbox when it was sent.
    var isFromBacklog: Bool {
        if case .message(let message) = self { message.storedID != 0 && message.commit == nil } else { false }
    }

    /// Where the store's answer stands, for a durable message placed in the mailbox when it was sent;
    /// nil for everything else.
    var commitState: DurableCommit.State? {
        if case .message(let message) = self { message.commit?.state } else { nil }
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
///
/// Its fields live in one immutable object that every copy shares: a fan-out's receivers, their
/// mailboxes and delivery windows hold a reference each instead of copying a hundred bytes and
/// retaining every field; the rare change (another attempt) makes a new object.
public struct Message: Sendable {
    private final class Fields: Sendable {
        let kind: DeliveryKind
        let from: String
        let subject: String
        let correlationID: UInt64
        let deadline: UInt64?
        let payload: ByteBuffer
        let attempts: UInt16
        let storedID: UInt64
        let credit: CreditOwner?
        let commit: DurableCommit?

        init(
            kind: DeliveryKind, from: String, subject: String, correlationID: UInt64, deadline: UInt64?,
            payload: ByteBuffer, attempts: UInt16, storedID: UInt64, credit: CreditOwner?, commit: DurableCommit?
        ) {
            self.kind = kind
            self.from = from
            self.subject = subject
            self.correlationID = correlationID
            self.deadline = deadline
            self.payload = payload
            self.attempts = attempts
            self.storedID = storedID
            self.credit = credit
            self.commit = commit
        }
    }

    private let fields: Fields

    public var kind: DeliveryKind { fields.kind }
    public var from: String { fields.from }
    public var subject: String { fields.subject }
    /// For requests: the requester's session and pending id, see ``CorrelationTable/wireID(session:local:)``.
    public var correlationID: UInt64 { fields.correlationID }
    public var deadline: UInt64? { fields.deadline }
    public var payload: ByteBuffer { fields.payload }
    /// Delivery attempts already made (0 for a new message).
    public var attempts: UInt16 { fields.attempts }
    /// The id of its durable copy (``MessageStore``), 0 for a message held in memory only.
    public var storedID: UInt64 { fields.storedID }
    /// The protocol 2 sender's window it counts against until a receiver first takes it.
    var credit: CreditOwner? { fields.credit }
    /// For a durable message placed in its receiver's mailbox when it was sent: the store's answer.
    var commit: DurableCommit? { fields.commit }

    public init(
        kind: DeliveryKind, from: String, subject: String = "", correlationID: UInt64 = 0,
        deadline: UInt64?, payload: ByteBuffer
    ) {
        self.init(
            kind: kind, from: from, subject: subject, correlationID: correlationID, deadline: deadline,
            payload: payload, attempts: 0, storedID: 0, credit: nil)
    }

    init(
        kind: DeliveryKind, from: String, subject: String = "", correlationID: UInt64 = 0, deadline: UInt64?,
        payload: ByteBuffer, attempts: UInt16 = 0, storedID: UInt64 = 0, credit: CreditOwner?,
        commit: DurableCommit? = nil
    ) {
        fields = Fields(
            kind: kind, from: from, subject: subject, correlationID: correlationID, deadline: deadline,
            payload: payload, attempts: attempts, storedID: storedID, credit: credit, commit: commit)
    }

    /// The same message for another attempt: `attempts` made so far, and no longer counted against
    /// its sender's window (that came back when it was first taken).
    func retried(attempts: UInt16) -> Message {
        Message(
            kind: kind, from: from, subject: subject, correlationID: correlationID, deadline: deadline,
            payload: payload, attempts: attempts, storedID: storedID, credit: nil, commit: commit)
    }
}

extension Message {
    /// A stored message, handed out from its receiver's backlog.
    init(_ stored: StoredMessage) {
        self.init(
            kind: DeliveryKind(rawValue: stored.kind) ?? .direct, from: stored.from, subject: stored.subject,
            deadline: stored.deadline, payload: ByteBuffer(bytes: stored.payload), attempts: stored.attempts,
            storedID: stored.id, credit: nil)
    }
}
