/// Which way ``ACBClient/lineage(_:_:depth:)`` follows parent links.
public enum LineageDirection: UInt16, Sendable {
    /// The contexts this one was derived from, and theirs.
    case ancestors = 0
    /// The contexts derived from this one, and from those.
    case descendants = 1
}
