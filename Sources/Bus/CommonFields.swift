import NIOCore

/// Whom a send, request or stream is for: an agent by id, or any ready agent with a capability;
/// or, for a stream only, the body of a context (by id) that a CONTEXT_WRITE then takes.
public struct Target: Sendable, Hashable {
    public enum Kind: UInt8, Sendable { case agent = 0, capability = 1, context = 2 }
    public var kind: Kind
    public var name: String

    public init(kind: Kind, name: String) {
        self.kind = kind
        self.name = name
    }

    public static func agent(_ id: String) -> Target { Target(kind: .agent, name: id) }
    public static func capability(_ name: String) -> Target { Target(kind: .capability, name: name) }
    /// An upload that becomes the body of context `id` (STREAM_OPEN only).
    public static func context(_ id: String) -> Target { Target(kind: .context, name: id) }

    init(reading reader: inout WireReader) throws(BusError) {
        let raw = try reader.u8("target.kind")
        guard let kind = Kind(rawValue: raw) else { throw BusError(.badFrame, "unknown target kind \(raw)") }
        self.init(kind: kind, name: try reader.string("target.name"))
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(kind.rawValue)
        buffer.writeWireString(name)
    }
}

/// What an agent announces about its capacity; capability routing only picks ``ready`` agents.
public enum Readiness: UInt8, Sendable {
    /// Takes new work.
    case ready = 0
    /// Connected, but capability routing skips it.
    case busy = 1
    /// Finishing in-flight work; gets no new capability-routed work.
    case draining = 2
}

/// Whether a registered agent has a live session.
public enum AgentStatus: UInt8, Sendable {
    /// Any status (a DISCOVER filter only).
    case any = 0
    case online = 1
    case offline = 2
}

/// How a delivery came to be.
public enum DeliveryKind: UInt8, Sendable {
    case direct = 0, broadcast = 1, topic = 2, request = 3
}

/// What the bus did with an accepted command.
public enum Outcome: UInt8, Sendable {
    /// Done (register, subscribe, …).
    case ok = 0
    /// Handed to the receivers' sessions; ``Ok/recipients`` says how many.
    case delivered = 1
    /// Stored for an agent that is offline (with a persistence backend).
    case queued = 2
}

extension Optional where Wrapped == UInt64 {
    /// Absolute deadlines travel as Unix milliseconds, 0 meaning none.
    var wireDeadline: UInt64 { self ?? 0 }
}

extension UInt64 {
    /// The deadline a wire value means: nil for 0.
    var deadlineFromWire: UInt64? { self == 0 ? nil : self }
}
