/// The roles a token may grant, and which client frames each allows.
///
/// A session may send a frame if any of its roles allows it. ACK, NACK, HEARTBEAT, STREAM_ABORT and
/// STREAM_STATUS (a receiver resuming a download) only finish what the bus already started, and PING
/// starts nothing, so every role may send them.
public enum Role: String, Sendable, CaseIterable {
    case admin
    case agentFull = "agent-full"
    case agentProducer = "agent-producer"
    case agentConsumer = "agent-consumer"
    case observer

    /// Whether this role may send a frame of `type` in an open session. (LOGOUT is answered by the
    /// gateway before roles are asked: every session may log out.)
    public func allows(_ type: FrameType) -> Bool {
        guard type.isSentByClients, !type.isHandshake else { return false }
        switch type {
        case .ack, .nack, .heartbeat, .streamAbort, .streamStatus, .ping:
            return true
        case .register, .unregister, .discover:
            return self != .observer || type == .discover
        case .send, .broadcast, .publish, .request, .streamOpen, .streamChunk, .streamEnd, .streamResume:
            return self == .admin || self == .agentFull || self == .agentProducer
        case .contextGet, .contextList, .contextHistory, .contextLineage, .contextWatch, .contextUnwatch, .keyFetch:
            return true
        case .keyPublish:
            return self != .observer
        case .contextWrite:
            return self == .admin || self == .agentFull || self == .agentProducer
        case .subscribe, .unsubscribe, .reply:
            return self == .admin || self == .agentFull || self == .agentConsumer
        default:
            return false
        }
    }

    /// The roles a token names; names of no known role grant nothing and are dropped.
    public static func parse(_ names: [String]) -> [Role] {
        names.compactMap(Role.init(rawValue:))
    }
}
