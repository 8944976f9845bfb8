/// Which sequence numbers arrived: counts each once, and the duplicates apart, so a run can say
/// exactly how many messages it lost.
public struct SequenceTally: Sendable {
    private var words: [UInt64] = []
    public private(set) var unique: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0

    public init() {}

    public mutating func record(_ sequence: UInt64) {
        let word = Int(sequence >> 6)
        let bit = UInt64(1) << (sequence & 63)
        if word >= words.count {
            words.append(contentsOf: repeatElement(0, count: max(word + 1 - words.count, words.count)))
        }
        if words[word] & bit != 0 {
            duplicates += 1
        } else {
            words[word] |= bit
            unique += 1
        }
    }

    /// How many of the sequence numbers below `count` never arrived.
    public func missing(below count: UInt64) -> UInt64 {
        var seen: UInt64 = 0
        for (index, word) in words.enumerated() {
            let first = UInt64(index) << 6
            guard first < count else { break }
            let kept = count - first >= 64 ? word : word & ((UInt64(1) << (count - first)) - 1)
            seen += UInt64(kept.nonzeroBitCount)
        }
        return count - seen
    }
}
