/// Rows in PostgreSQL's binary COPY format: a signature and header, then per row a field count and
/// each field as a length (-1 for NULL) and its binary value, then a trailer.
struct BinaryCopy {
    /// The signature `PGCOPY\n\xFF\r\n\0`, then flags and header extension length, both 0.
    private var data: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0, 0, 0, 0, 0]

    /// PostgreSQL's epoch, 2000-01-01T00:00:00Z, in Unix milliseconds.
    private static let epochMs: Int64 = 946_684_800_000

    mutating func row(fields: Int16) { append(fields) }

    mutating func null() { append(Int32(-1)) }

    /// A `smallint`, `integer` or `bigint` column.
    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        append(Int32(MemoryLayout<T>.size))
        append(value)
    }

    mutating func text(_ value: String) {
        append(Int32(value.utf8.count))
        data += value.utf8
    }

    /// A `bytea` (or, with UTF-8, `text`) column.
    mutating func bytes(_ value: [UInt8]) {
        append(Int32(value.count))
        data += value
    }

    /// A `timestamptz` column: microseconds since PostgreSQL's epoch.
    mutating func timestamp(unixMs: UInt64) { integer((Int64(unixMs) - Self.epochMs) * 1_000) }

    /// The data with its trailer.
    func finished() -> [UInt8] {
        var copy = self
        copy.append(Int16(-1))
        return copy.data
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { data += $0 }
    }
}
