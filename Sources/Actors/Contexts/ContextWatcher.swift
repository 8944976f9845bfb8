public import Bus

/// Where a watch's events go: a session's mailbox, or an admin API event stream.
public protocol ContextWatcher: AnyObject, Sendable {
    /// Offers one event of watch `event.watch`; false when the watcher cannot take it now (full):
    /// the watch then ends and ``lagged(watch:after:)`` is called.
    func offer(_ event: ContextEvent) -> Bool
    /// The watch `ref` ended because the watcher fell behind; `after` is the last position
    /// (version or revision) offered, from which it can watch again.
    func lagged(watch ref: UInt64, after: UInt64)
}

/// One live watch, as the ``ContextService`` keeps it.
struct Watch {
    /// What it watches: one id, or the ids a pattern matches.
    enum Target {
        case id(String)
        case pattern([Substring])

        /// Whether a context with `id` is watched.
        func matches(_ id: String) -> Bool {
            switch self {
            case .id(let watched): watched == id
            case .pattern(let tokens): Topic.matches(tokens, id)
            }
        }
    }

    let watcher: any ContextWatcher
    let ref: UInt64
    let principal: ContextPrincipal
    let target: Target
    /// Empty for whole-context events; else only changes touching these, as JSON Patches.
    let paths: [JSONPointer]
    /// The last position offered: a version for one id, the tenant's revision for a pattern.
    var position: UInt64

    /// The position of `head` in this watch's terms.
    func position(of head: ContextHead) -> UInt64 {
        if case .id = target { head.version } else { head.revision }
    }
}
