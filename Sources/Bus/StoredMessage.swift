/// A message the bus keeps durably for an offline receiver until it is acknowledged.
public struct StoredMessage: Sendable, Equatable, Codable {
    /// The bus's id: time-ordered, so a receiver's backlog is delivered in id order.
    public var id: UInt64
    public var tenant: String
    /// The receiver's agent id.
    public var to: String
    public var from: String
    /// A ``DeliveryKind`` raw value.
    public var kind: UInt8
    public var subject: String
    /// The sender's deadline (Unix ms), if it set one.
    public var deadline: UInt64?
    /// When the bus gives up on it (Unix ms): the deadline, or the queue's time to live.
    public var expiresAt: UInt64
    public var payload: [UInt8]
    /// The sender's idempotency key, empty for none.
    public var idempotencyKey: String
    /// Delivery attempts already made.
    public var attempts: UInt16

    public init(
        id: UInt64, tenant: String, to: String, from: String, kind: DeliveryKind, subject: String,
        deadline: UInt64?, expiresAt: UInt64, payload: [UInt8], idempotencyKey: String, attempts: UInt16 = 0
    ) {
        self.id = id
        self.tenant = tenant
        self.to = to
        self.from = from
        self.kind = kind.rawValue
        self.subject = subject
        self.deadline = deadline
        self.expiresAt = expiresAt
        self.payload = payload
        self.idempotencyKey = idempotencyKey
        self.attempts = attempts
    }
}
