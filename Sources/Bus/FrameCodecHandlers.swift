public import NIOCore

/// Turns inbound bytes into ``Frame``s in a `ByteToMessageHandler` (the client; the server's
/// session handler reads with a ``FrameReader``).
///
/// A frame over `maxFrameBytes` or a malformed one throws its ``BusError``; whoever reads the
/// frames answers with ERROR/GOAWAY and closes.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame
    public let maxFrameBytes: UInt32

    public init(maxFrameBytes: UInt32) { self.maxFrameBytes = maxFrameBytes }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        try Frame.decode(from: &buffer, maxFrameBytes: maxFrameBytes)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        try decode(buffer: &buffer)
    }
}

/// Turns outbound ``Frame``s into bytes for a NIO pipeline.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) {
        data.encode(into: &out)
    }
}
