public import Bus
public import Foundation
public import NIOCore

/// One change a watch saw: what happened, the context's new head, and the body or patch if the
/// bus sent one.
public struct ContextWatchEvent: Sendable {
    public var kind: ContextEventKind
    public var head: ContextHead
    /// What ``payload`` holds: the new body, a JSON Patch (watches with paths), or nothing (a
    /// deletion or expiry, or a body over ``Limits/maxEventBody``: GET it).
    public var payloadKind: EventPayload
    public var payload: ByteBuffer

    init(_ event: ContextEvent) {
        self.kind = event.kind
        self.head = event.head
        self.payloadKind = event.payloadKind
        self.payload = event.payload
    }

    public var id: String { head.id }
    /// The position of a watch on one id.
    public var version: UInt64 { head.version }
    /// The position of a watch on a pattern.
    public var revision: UInt64 { head.revision }
    /// The new body, if the event carries it.
    public var body: ByteBuffer? { payloadKind == .body ? payload : nil }
    /// The RFC 6902 JSON Patch from the previous version, if the event carries one.
    public var patch: ByteBuffer? { payloadKind == .patch ? payload : nil }

    /// The body the event carries, read as JSON into a `Value`.
    /// - Throws: ``ErrorCode/invalidArgument`` if the event carries no body; what `decoder` throws.
    public func decode<Value: Decodable>(
        _ type: Value.Type = Value.self, decoder: JSONDecoder = JSONDecoder()
    ) throws -> Value {
        guard let body else { throw BusError(.invalidArgument, "the \(kind.name) event of \(id) carries no body") }
        return try decoder.decode(type, from: Data(body.readableBytesView))
    }
}
