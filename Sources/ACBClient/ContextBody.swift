public import NIOCore

/// Bytes that can be a context's body, as they are: `[UInt8]`, `ByteBuffer`, and `String` (UTF-8).
/// For a value encoded as JSON, use the `json:` variants of the writes.
public protocol ContextBody: Sendable {
    /// The body's bytes.
    var contextBytes: ByteBuffer { get }
}

extension ByteBuffer: ContextBody {
    public var contextBytes: ByteBuffer { self }
}

extension String: ContextBody {
    public var contextBytes: ByteBuffer { ByteBuffer(string: self) }
}

extension Array: ContextBody where Element == UInt8 {
    public var contextBytes: ByteBuffer { ByteBuffer(bytes: self) }
}
