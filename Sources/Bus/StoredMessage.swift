import Foundation

/// A message the bus keeps durably for an offline receiver until it is acknowledged.
///
/// Codable with the payload as `Data` (base64 in JSON, not an array of numbers), for spools.
public struct StoredMessage: Sendable, Equatable, Codable {
    /// The bus's id: time-ordered (``firstID(atUnixMs:)``), so a receiver's backlog is delivered in id order.
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
    /// Stored as already handed out (to the live session of a durable message's receiver, which
    /// holds it in memory), not waiting in the backlog: its status starts at `delivered`.
    public var handedOut: Bool

    public init(
        id: UInt64, tenant: String, to: String, from: String, kind: DeliveryKind, subject: String,
        deadline: UInt64?, expiresAt: UInt64, payload: [UInt8], idempotencyKey: String, attempts: UInt16 = 0,
        handedOut: Bool = false
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
        self.handedOut = handedOut
    }

    /// The smallest id the bus makes at Unix time `ms`: the milliseconds since 2026-01-01 in the
    /// high bits, a counter in the low 20 (`Supervisor.nextMessageID` counts up from it). The store
    /// finds old rows by it.
    public static func firstID(atUnixMs ms: UInt64) -> UInt64 {
        let epochMs: UInt64 = 1_767_225_600_000  // 2026-01-01T00:00:00Z
        return ms > epochMs ? (ms - epochMs) << 20 : 0
    }

    private enum CodingKeys: String, CodingKey {
        case id, tenant, to, from, kind, subject, deadline, expiresAt, payload, idempotencyKey, attempts, handedOut
    }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            id: try values.decode(UInt64.self, forKey: .id), tenant: try values.decode(String.self, forKey: .tenant),
            to: try values.decode(String.self, forKey: .to), from: try values.decode(String.self, forKey: .from),
            kind: DeliveryKind(rawValue: try values.decode(UInt8.self, forKey: .kind)) ?? .direct,
            subject: try values.decode(String.self, forKey: .subject),
            deadline: try values.decodeIfPresent(UInt64.self, forKey: .deadline),
            expiresAt: try values.decode(UInt64.self, forKey: .expiresAt),
            payload: Array(try values.decode(Data.self, forKey: .payload)),
            idempotencyKey: try values.decode(String.self, forKey: .idempotencyKey),
            attempts: try values.decode(UInt16.self, forKey: .attempts),
            // Absent from spools written before it existed.
            handedOut: try values.decodeIfPresent(Bool.self, forKey: .handedOut) ?? false)
    }

    public func encode(to encoder: any Encoder) throws {
        var values = encoder.container(keyedBy: CodingKeys.self)
        try values.encode(id, forKey: .id)
        try values.encode(tenant, forKey: .tenant)
        try values.encode(to, forKey: .to)
        try values.encode(from, forKey: .from)
        try values.encode(kind, forKey: .kind)
        try values.encode(subject, forKey: .subject)
        try values.encodeIfPresent(deadline, forKey: .deadline)
        try values.encode(expiresAt, forKey: .expiresAt)
        try values.encode(Data(payload), forKey: .payload)
        try values.encode(idempotencyKey, forKey: .idempotencyKey)
        try values.encode(attempts, forKey: .attempts)
        if handedOut { try values.encode(handedOut, forKey: .handedOut) }
    }
}
