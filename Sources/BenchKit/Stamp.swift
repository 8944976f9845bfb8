import ACBClient
import NIOCore

/// The body of every harness message: its sequence number and the time it was meant to be sent
/// (monotonic nanoseconds), then padding up to the payload size.
struct Stamp {
    static let bytes = 16
    private var template: ByteBuffer

    init(payloadBytes: Int) {
        template = ByteBuffer(repeating: UInt8(ascii: "a"), count: max(payloadBytes, Self.bytes))
    }

    /// A payload carrying `sequence` and `nanos`; reuses one buffer, since the wire copies it out at once.
    mutating func payload(sequence: UInt64, nanos: UInt64) -> ByteBuffer {
        template.setInteger(sequence, at: template.readerIndex)
        template.setInteger(nanos, at: template.readerIndex + 8)
        return template
    }

    static func read(_ payload: ByteBuffer) -> (sequence: UInt64, nanos: UInt64)? {
        guard let sequence = payload.getInteger(at: payload.readerIndex, as: UInt64.self),
            let nanos = payload.getInteger(at: payload.readerIndex + 8, as: UInt64.self)
        else { return nil }
        return (sequence, nanos)
    }

    /// The stamp of `payload`, opened with `opener` first when there is one; nil if it does not open.
    static func read(_ payload: ByteBuffer, opener: BoxSealer?) -> (sequence: UInt64, nanos: UInt64)? {
        guard let opener else { return read(payload) }
        guard let opened = try? opener.open(Array(payload.readableBytesView)), opened.count >= bytes else { return nil }
        func integer(at offset: Int) -> UInt64 { opened[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        return (integer(at: 0), integer(at: 8))
    }

    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
}
