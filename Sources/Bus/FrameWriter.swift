public import NIOCore

/// Writes a frame's fields into memory reserved for the whole frame: one capacity check and one
/// exclusive access to the buffer's storage per frame, instead of one per field. For the frames of
/// the per-message path, whose size is known before they are written.
@usableFromInline
struct FrameWriter {
    @usableFromInline var memory: UnsafeMutableRawBufferPointer
    @usableFromInline var offset = 0

    @inlinable init(_ memory: UnsafeMutableRawBufferPointer) { self.memory = memory }

    @inlinable mutating func put<T: FixedWidthInteger>(_ value: T) {
        memory.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }

    /// A `str` field; its length was checked by whoever sized the frame.
    @inlinable mutating func put(_ string: String) {
        var string = string
        put(UInt16(string.utf8.count))
        string.withUTF8 { put(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// A `bytes` field.
    @inlinable mutating func put(_ bytes: ByteBuffer) {
        put(UInt32(bytes.readableBytes))
        bytes.withUnsafeReadableBytes { put(bytes: $0) }
    }

    @inlinable mutating func put(bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        (memory.baseAddress! + offset).copyMemory(from: base, byteCount: bytes.count)
        offset += bytes.count
    }
}

extension ByteBuffer {
    /// Appends a whole frame of `bodyBytes` whose body `body` writes.
    @inlinable
    mutating func writeFrame(_ type: FrameType, bodyBytes: Int, _ body: (inout FrameWriter) -> Void) {
        let total = Frame.headerBytes + 1 + bodyBytes
        writeWithUnsafeMutableBytes(minimumWritableBytes: total) { memory in
            var writer = FrameWriter(memory)
            writer.put(UInt32(1 + bodyBytes))
            writer.put(type.rawValue)
            body(&writer)
            return total
        }
    }
}

extension Deliver {
    /// The whole DELIVER frame, header included (the per-message frame every receiver gets).
    @inlinable
    public func encodeFrame(into buffer: inout ByteBuffer) {
        let size =
            8 + 1 + 2 + from.utf8.count + 2 + subject.utf8.count + 8 + 8 + 2 + 4 + payload.readableBytes
            + (messageID == nil ? 0 : 8)
        buffer.writeFrame(.deliver, bodyBytes: size) { w in
            w.put(deliveryID)
            w.put(kind.rawValue)
            w.put(from)
            w.put(subject)
            w.put(correlationID)
            w.put(deadline ?? 0)
            w.put(attempt)
            w.put(payload)
            if let messageID { w.put(messageID) }
        }
    }
}
