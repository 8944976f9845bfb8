import NIOCore

/// Reads one unsigned decimal out of a small text answer without parsing the whole of it: a JSON
/// field (`"seq":42`, `"seq":"0042"`) or a header line (`Nats-Sequence: 42`).
///
/// For the harness's own bodies and the few server answers it reads (JetStream acknowledgements,
/// headers); it finds the first occurrence of the marker, so markers must be unambiguous.
/// Linear in the buffer's length.
enum FieldScan {
    /// The digits after the first `marker` in `buffer`, past spaces and one opening quote; nil if the
    /// marker is missing, no digit follows, or the number overflows.
    static func unsigned(after marker: String, in buffer: ByteBuffer) -> UInt64? {
        let bytes = buffer.readableBytesView
        let pattern = Array(marker.utf8)
        guard let first = pattern.first, bytes.count >= pattern.count else { return nil }
        var start = bytes.startIndex
        while let found = bytes[start...].firstIndex(of: first) {
            let end = found + pattern.count
            guard end <= bytes.endIndex else { return nil }
            if bytes[found..<end].elementsEqual(pattern) { return digits(bytes[end...]) }
            start = found + 1
        }
        return nil
    }

    private static func digits(_ bytes: ByteBufferView.SubSequence) -> UInt64? {
        var rest = bytes.drop(while: { $0 == UInt8(ascii: " ") })
        if rest.first == UInt8(ascii: "\"") { rest = rest.dropFirst() }
        var value: UInt64 = 0
        var count = 0
        for byte in rest {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { break }
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carried) = times.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflow, !carried else { return nil }
            value = sum
            count += 1
        }
        return count > 0 ? value : nil
    }
}
