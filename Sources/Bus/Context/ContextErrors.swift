/// The context errors whose message carries a number a client acts on. The message starts with
/// a fixed phrase and the number (`current version 7: ...`), as docs/protocol.md states, so a
/// client reads it without a field of its own in ERROR.
extension BusError {
    /// `version_conflict`: the context is at `current` (0: it does not exist), not at what the
    /// writer expected.
    public static func versionConflict(current: UInt64, _ why: String) -> BusError {
        BusError(.versionConflict, "current version \(current): \(why)")
    }

    /// `compacted`: a watch asked to resume after a position older than `oldest`, the oldest
    /// position it can resume after.
    public static func compacted(oldest: UInt64, _ why: String) -> BusError {
        BusError(.compacted, "oldest \(oldest): \(why)")
    }

    /// The current version a `version_conflict` names.
    public var currentVersion: UInt64? { code == .versionConflict ? number(after: "current version ") : nil }

    /// The oldest position a `compacted` error names.
    public var oldestHeld: UInt64? { code == .compacted ? number(after: "oldest ") : nil }

    private func number(after phrase: String) -> UInt64? {
        guard message.hasPrefix(phrase) else { return nil }
        return UInt64(message.dropFirst(phrase.count).prefix(while: \.isNumber))
    }
}
