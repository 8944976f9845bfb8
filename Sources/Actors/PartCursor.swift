import Bus

/// Where a file another node sends a part at a time (``StreamRelay``) stands on its way in: the
/// next part expected and the bytes written so far. Shared by relayed streams and handed-over
/// uploads.
struct PartCursor: Sendable {
    var next: UInt32 = 0
    var bytes: UInt64 = 0

    /// Where `part` (part number `index`, `length` bytes) goes, if it is the next one and fits in
    /// `total`; the cursor moves past it. - Throws: ``ErrorCode/internal`` otherwise.
    mutating func place(_ index: UInt32, length: Int, total: UInt64) throws(BusError) -> UInt64 {
        guard index == next, bytes + UInt64(length) <= total else {
            throw BusError(.internal, "a relayed file's parts came out of order")
        }
        defer { (next, bytes) = (next + 1, bytes + UInt64(length)) }
        return bytes
    }
}
