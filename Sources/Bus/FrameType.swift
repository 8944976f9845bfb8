public import NIOCore

/// The one-byte type that follows every frame's length prefix. Values never change meaning.
public enum FrameType: UInt8, Sendable, CaseIterable {
    case hello = 0x01, welcome = 0x02, error = 0x03, goAway = 0x04, ok = 0x05
    case login = 0x06, refresh = 0x07, tokens = 0x08, logout = 0x09
    case credit = 0x0A, ping = 0x0B, pong = 0x0C, confirm = 0x0D
    case register = 0x10, unregister = 0x11, discover = 0x12, discovered = 0x13, heartbeat = 0x14
    case send = 0x20, broadcast = 0x21, publish = 0x22, subscribe = 0x23, unsubscribe = 0x24
    case deliver = 0x25, ack = 0x26, nack = 0x27
    case request = 0x30, reply = 0x31, response = 0x32
    case streamOpen = 0x40, streamChunk = 0x41, streamEnd = 0x42
    case streamResume = 0x43, streamStatus = 0x44, streamAbort = 0x45
    case contextWrite = 0x50, contextGet = 0x51, contextList = 0x52, contextHistory = 0x53
    case contextWatch = 0x54, contextUnwatch = 0x55, contextLineage = 0x56
    case context = 0x58, contextPage = 0x59, contextEvent = 0x5A, contextWatching = 0x5B
    case keyPublish = 0x60, keyFetch = 0x61, key = 0x62
}

extension FrameType {
    /// Whether clients may send frames of this type (the others only come from the server).
    public var isSentByClients: Bool {
        switch self {
        case .welcome, .error, .goAway, .ok, .tokens, .credit, .pong, .confirm, .discovered, .deliver, .response,
            .context, .contextPage,
            .contextEvent, .contextWatching, .key:
            false
        default: true
        }
    }

    /// Whether the frame belongs to the handshake (HELLO, and LOGIN or REFRESH before it): never
    /// allowed in an open session.
    public var isHandshake: Bool {
        self == .hello || self == .login || self == .refresh
    }
}

/// A frame's body: how it is read from and written to the wire, in field order.
public protocol FrameBody: Sendable, Equatable {
    /// Reads the body's fields in wire order. The caller checks for trailing bytes.
    init(reading: inout WireReader) throws(BusError)
    /// Writes the body's fields in wire order.
    func write(to buffer: inout ByteBuffer)
}
