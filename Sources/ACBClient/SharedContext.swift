public import Bus
public import Foundation
public import NIOCore

/// One version of a context: its head and its body.
public struct SharedContext: Sendable {
    public var head: ContextHead
    public var body: ByteBuffer

    public init(head: ContextHead, body: ByteBuffer) {
        self.head = head
        self.body = body
    }

    public var id: String { head.id }
    public var version: UInt64 { head.version }
    /// The body's bytes.
    public var bytes: [UInt8] { Array(body.readableBytesView) }
    /// The body as UTF-8 text.
    public var text: String { String(buffer: body) }

    /// The body, read as JSON into a `Value`. - Throws: what `decoder` throws.
    public func decode<Value: Decodable>(
        _ type: Value.Type = Value.self, decoder: JSONDecoder = JSONDecoder()
    ) throws -> Value {
        try decoder.decode(type, from: Data(body.readableBytesView))
    }
}
