/// What a watcher of one context must see: every version, once, in order. Counts the versions it
/// skipped and the ones that came again or late, and, against the versions the writer committed,
/// the ones it never saw.
struct VersionTally: Sendable {
    /// The first version seen; nil before any.
    private(set) var first: UInt64?
    /// The highest version seen.
    private(set) var last: UInt64 = 0
    /// Versions seen in order, each once.
    private(set) var inOrder: UInt64 = 0
    /// Versions skipped between two that were seen.
    private(set) var gaps: UInt64 = 0
    /// Versions at or below the highest already seen: repeats, or late.
    private(set) var duplicates: UInt64 = 0

    mutating func record(_ version: UInt64) {
        guard first != nil else {
            first = version
            last = version
            inOrder = 1
            return
        }
        guard version > last else {
            duplicates += 1
            return
        }
        gaps += version - last - 1
        last = version
        inOrder += 1
    }

    /// Versions of `committed` never seen: the gaps, and any before the first or after the last seen.
    func missing(of committed: ClosedRange<UInt64>) -> UInt64 {
        guard let first else { return UInt64(committed.count) }
        return gaps + first.minus(committed.lowerBound) + committed.upperBound.minus(last)
    }
}
