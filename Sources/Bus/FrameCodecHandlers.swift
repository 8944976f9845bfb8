public import NIOCore

/// Turns inbound bytes into ``Frame``s for a NIO pipeline (server and client alike).
///
/// A frame over `maxFrameBytes` or a malformed one fails the pipeline with the ``BusError``;
/// the handler after it answers with ERROR/GOAWAY and closes.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame
    public let maxFrameBytes: UInt32

    public init(maxFrameBytes: UInt32) { self.maxFrameBytes = maxFrameBytes }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Frame.decode(from: &buffer, maxFrameBytes: maxFrameBytes) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        try decode(context: context, buffer: &buffer)
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
