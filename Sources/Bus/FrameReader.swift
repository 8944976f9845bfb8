public import NIOCore

/// Splits the bytes of successive reads into ``Frame``s, decoding each read's buffer in place.
///
/// NIO's byte-to-message processors append every read to a buffer of their own and compact it as
/// frames are taken: a copy of every byte, and a copy of the whole buffer whenever a decoded
/// frame's payload (a slice of it) is still held elsewhere. This reader copies only the frame a
/// read cuts off, into a buffer of its own that grows with what arrives (never beyond the frame's
/// size, and never ahead of the bytes received: four bytes of length prefix do not reserve a
/// megabyte); every other frame, payload included, stays a slice of the read it came in.
public struct FrameReader {
    public let maxFrameBytes: UInt32
    /// The start of a frame cut off by the end of the last read.
    private var carry: ByteBuffer?

    public init(maxFrameBytes: UInt32) { self.maxFrameBytes = maxFrameBytes }

    /// Calls `body` with each whole frame of `buffer` (and of the frame the last read cut off),
    /// in order, and keeps what follows the last whole frame for the next read.
    /// - Throws: the ``BusError`` of a frame over `maxFrameBytes` or a malformed one; the frames
    ///   before it were handed to `body`.
    public mutating func read(_ buffer: ByteBuffer, _ body: (Frame) -> Void) throws(BusError) {
        var input = buffer
        if var partial = carry {
            carry = nil
            guard let frame = try complete(&partial, from: &input) else {
                carry = partial
                return
            }
            body(frame)
        }
        while let frame = try Frame.decode(from: &input, maxFrameBytes: maxFrameBytes) { body(frame) }
        guard input.readableBytes > 0 else { return }
        var partial = ByteBufferAllocator().buffer(capacity: input.readableBytes)
        partial.writeBuffer(&input)
        carry = partial
    }

    /// Moves bytes from `input` into `partial` until it holds a whole frame, and decodes it.
    /// - Returns: nil if `input` ran out first (`partial` keeps what it has).
    private func complete(_ partial: inout ByteBuffer, from input: inout ByteBuffer) throws(BusError) -> Frame? {
        if partial.readableBytes < Frame.headerBytes {
            var head = input.readSlice(length: min(Frame.headerBytes - partial.readableBytes, input.readableBytes))!
            partial.writeBuffer(&head)
            guard partial.readableBytes == Frame.headerBytes else { return nil }
            if let frame = try Frame.decode(from: &partial, maxFrameBytes: maxFrameBytes) { return frame }
        }
        let total = Frame.headerBytes + Int(partial.getInteger(at: partial.readerIndex, as: UInt32.self)!)
        var rest = input.readSlice(length: min(total - partial.readableBytes, input.readableBytes))!
        if partial.writableBytes < rest.readableBytes {
            // At least double, so a large frame is copied a few times, not once per read; at most the frame.
            let needed = partial.readableBytes + rest.readableBytes
            partial.reserveCapacity(min(total, max(needed, 2 * partial.capacity)))
        }
        partial.writeBuffer(&rest)
        return try Frame.decode(from: &partial, maxFrameBytes: maxFrameBytes)
    }
}
