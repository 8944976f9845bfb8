/// An error of the bus: a stable ``ErrorCode``, a message for humans and, for
/// ``ErrorCode/overloaded``, how long to wait before retrying.
public struct BusError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The stable code, shared with the wire protocol and the admin API.
    public var code: ErrorCode
    /// What went wrong, for a human.
    public var message: String
    /// Milliseconds to wait before retrying; 0 when a retry will not help.
    public var retryAfterMs: UInt32

    public init(_ code: ErrorCode, _ message: String, retryAfterMs: UInt32 = 0) {
        self.code = code
        self.message = message
        self.retryAfterMs = retryAfterMs
    }

    public var description: String { "\(code.name): \(message)" }
}
