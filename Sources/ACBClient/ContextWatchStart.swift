/// Where a watch starts.
public enum ContextWatchStart: Sendable, Equatable {
    /// With the changes made after the watch is set up.
    case now
    /// With the current version of each watched context (events of kind `snapshot`), then changes.
    case snapshot
    /// With every change after a position: a version for one id, a tenant revision for a pattern
    /// (``ContextHead/revision``). Refused with `compacted` if the bus no longer keeps it.
    case after(UInt64)
}
