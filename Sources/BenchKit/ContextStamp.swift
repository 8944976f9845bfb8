import NIOCore

/// The JSON body of the harness's context writes, ``bytes`` long:
/// `{"pad":"aaaa…","seq":"00000000000000000042","t":"00000000001234567890"}` — the write's
/// sequence number and when it was sent (``Stamp/now()`` nanoseconds), as fixed-width decimal
/// strings.
///
/// Strings, so a server that keeps JSON in canonical form keeps the figures as they were
/// written (a large number could come back as a float); keys sorted and no spaces, so the body is
/// already canonical. Readers look the fields up by name, not by offset.
struct ContextStamp {
    static let bytes = 100
    private static let width = 20
    private var template: ByteBuffer
    private let sequenceAt: Int
    private let nanosAt: Int

    init() {
        let head = #"{"pad":""#
        let middle = #"","seq":""#
        let tail = #"","t":""#
        let padding = Self.bytes - head.utf8.count - middle.utf8.count - tail.utf8.count - 2 * Self.width - 2
        template = ByteBuffer(string: head + String(repeating: "a", count: padding) + middle)
        sequenceAt = template.writerIndex
        template.writeRepeatingByte(UInt8(ascii: "0"), count: Self.width)
        template.writeString(tail)
        nanosAt = template.writerIndex
        template.writeRepeatingByte(UInt8(ascii: "0"), count: Self.width)
        template.writeString(#""}"#)
    }

    /// A body carrying `sequence` and `nanos`; reuses one buffer, since the wire copies it out at once.
    mutating func body(sequence: UInt64, nanos: UInt64) -> ByteBuffer {
        Self.write(sequence, at: sequenceAt, in: &template)
        Self.write(nanos, at: nanosAt, in: &template)
        return template
    }

    static func read(_ body: ByteBuffer) -> (sequence: UInt64, nanos: UInt64)? {
        guard let sequence = FieldScan.unsigned(after: #""seq":"#, in: body),
            let nanos = FieldScan.unsigned(after: #""t":"#, in: body)
        else { return nil }
        return (sequence, nanos)
    }

    /// The body of the compare-and-swap counter: `{"n":value}`.
    static func counter(_ value: UInt64) -> ByteBuffer { ByteBuffer(string: #"{"n":\#(value)}"#) }

    /// The value of a counter body, nil if it is not one.
    static func counterValue(_ body: ByteBuffer) -> UInt64? { FieldScan.unsigned(after: #""n":"#, in: body) }

    /// Writes `value` as ``width`` decimal digits, zero-padded, at `index`.
    private static func write(_ value: UInt64, at index: Int, in buffer: inout ByteBuffer) {
        var rest = value
        for offset in (0..<width).reversed() {
            buffer.setInteger(UInt8(ascii: "0") + UInt8(rest % 10), at: index + offset)
            rest /= 10
        }
    }
}
