public import NIOCore

/// Reads the fields of one frame body, in wire order, from a slice of the inbound buffer.
///
/// Every read checks the remaining length; a short body throws ``ErrorCode/badFrame``
/// naming the field. Payloads are returned as slices of the same storage, not copies. Fields are
/// read through a pointer to the body's bytes, valid while ``Frame/decode(from:maxFrameBytes:)``
/// decodes: one exclusive access to the buffer per frame rather than one per field.
public struct WireReader {
    /// The body, for slices of it.
    private let buffer: ByteBuffer
    /// The body's readable bytes.
    private let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: ByteBuffer, bytes: UnsafeRawBufferPointer) {
        self.buffer = buffer
        self.bytes = bytes
    }

    /// The next `count` bytes, or a `badFrame` naming `field` if the body ends first.
    private mutating func take(_ count: Int, _ field: String) throws(BusError) -> UnsafeRawBufferPointer {
        guard count <= bytes.count - offset else { throw Self.truncated(field) }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    /// A big-endian integer of type `T`.
    public mutating func integer<T: FixedWidthInteger>(_ field: String, as type: T.Type = T.self) throws(BusError) -> T
    {
        T(bigEndian: try take(MemoryLayout<T>.size, field).loadUnaligned(as: T.self))
    }

    public mutating func u8(_ field: String) throws(BusError) -> UInt8 { try integer(field) }
    public mutating func u16(_ field: String) throws(BusError) -> UInt16 { try integer(field) }
    public mutating func u32(_ field: String) throws(BusError) -> UInt32 { try integer(field) }
    public mutating func u64(_ field: String) throws(BusError) -> UInt64 { try integer(field) }

    /// A `str`: u16 byte length, then that many bytes of valid UTF-8.
    public mutating func string(_ field: String) throws(BusError) -> String {
        let length = Int(try u16(field))
        guard let string = Self.utf8(try take(length, field)) else {
            throw BusError(.badFrame, "\(field) is not valid UTF-8")
        }
        return string
    }

    /// A `bytes`: u32 byte length, then that many bytes, returned as a slice.
    public mutating func bytes(_ field: String) throws(BusError) -> ByteBuffer {
        let length = Int(try u32(field))
        let start = offset
        _ = try take(length, field)
        return buffer.getSlice(at: buffer.readerIndex + start, length: length)!  // in the body: checked by take
    }

    /// Exactly `count` raw bytes with no length prefix (used for the SHA-256 digest).
    public mutating func fixed(_ count: Int, _ field: String) throws(BusError) -> [UInt8] {
        Array(try take(count, field))
    }

    /// A `list<T>`: u16 count, then that many items, at most ``Limits/maxListCount``.
    public mutating func list<T>(
        _ field: String,
        _ item: (inout WireReader) throws(BusError) -> T
    ) throws(BusError) -> [T] {
        let count = Int(try u16(field))
        guard count <= Limits.maxListCount else {
            throw BusError(.badFrame, "\(field) has \(count) items, more than \(Limits.maxListCount)")
        }
        var items: [T] = []
        items.reserveCapacity(count)
        for _ in 0..<count { items.append(try item(&self)) }
        return items
    }

    /// Whether every byte of the body was read: an optional last field is absent.
    public var isAtEnd: Bool { offset == bytes.count }

    /// Throws unless every byte of the body of a `type` frame was consumed.
    public func finish(_ type: FrameType) throws(BusError) {
        guard offset == bytes.count else {
            throw BusError(.badFrame, "\(type) has \(bytes.count - offset) trailing bytes")
        }
    }

    /// The string `bytes` spell, or nil if they are not valid UTF-8. Identifiers are ASCII, which
    /// needs no validation beyond a byte scan: the general validator is far slower per field.
    private static func utf8(_ bytes: UnsafeRawBufferPointer) -> String? {
        if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func truncated(_ field: String) -> BusError {
        BusError(.badFrame, "frame ends inside \(field)")
    }
}

extension ByteBuffer {
    /// Writes a `str` field: u16 length and the UTF-8 bytes. Strings longer than 65,535 bytes are a
    /// programming error: every string field is validated against a much smaller limit first.
    @inlinable
    public mutating func writeWireString(_ string: String) {
        let length = string.utf8.count
        precondition(length <= Int(UInt16.max), "str field over 65535 bytes")
        writeInteger(UInt16(length))
        writeString(string)
    }

    /// Writes a human-readable `str` (an error or GOAWAY message), cut at a character boundary to
    /// at most ``Limits/maxMessageBytes``: messages may quote what a client sent.
    public mutating func writeWireMessage(_ message: String) {
        guard message.utf8.count > Limits.maxMessageBytes else { return writeWireString(message) }
        var bytes = 0
        var end = message.startIndex
        for index in message.indices {
            bytes += message[index].utf8.count
            guard bytes <= Limits.maxMessageBytes else { break }
            end = message.index(after: index)
        }
        writeWireString(String(message[..<end]))
    }

    /// Writes a `bytes` field: u32 length and the bytes.
    @inlinable
    public mutating func writeWireBytes(_ bytes: ByteBuffer) {
        writeInteger(UInt32(bytes.readableBytes))
        writeImmutableBuffer(bytes)
    }

    /// Writes a `list<T>` field: u16 count and each item.
    @inlinable
    public mutating func writeWireList<T>(_ items: [T], _ item: (inout ByteBuffer, T) -> Void) {
        writeInteger(UInt16(items.count))
        for element in items { item(&self, element) }
    }
}
