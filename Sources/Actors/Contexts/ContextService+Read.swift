public import Bus
import NIOConcurrencyHelpers
import NIOCore

extension ContextService {
    /// One context for `principal`: the latest version or a kept one, with its body.
    public func get(_ get: ContextGet, by principal: ContextPrincipal) throws(BusError) -> ContextReply {
        try Identifier.validate(get.id, field: "id")
        try requireLoaded()
        let now = WallClock.nowMs()
        let result = state.withLockedValue { state -> Result<ContextReply, BusError> in
            Result { () throws(BusError) in
                let current = try readable(get.id, by: principal, in: state)
                let entry = state.tenants[principal.tenant]?.entries[get.id]
                guard get.version == 0 else {
                    guard let version = entry?.versions.first(where: { $0.head.version == get.version }) else {
                        if let oldest = entry?.versions.first?.head.version, get.version < oldest {
                            throw .compacted(oldest: oldest, "version \(get.version) of \(get.id) is no longer kept")
                        }
                        throw BusError(.unknownContext, "context \(get.id) has no version \(get.version)")
                    }
                    return ContextReply(ref: get.ref, status: .body, head: version.head, body: version.body)
                }
                try Self.requireLive(current.head, now: now)
                if get.ifNewerThan != 0, current.head.version <= get.ifNewerThan {
                    return ContextReply(ref: get.ref, status: .notModified, head: current.head)
                }
                return ContextReply(ref: get.ref, status: .body, head: current.head, body: current.body)
            }
        }
        return try audited(result, id: get.id, operation: "get", by: principal)
    }

    /// One page of the live contexts of the tenant that `principal` may read and `list` selects,
    /// ordered by id.
    public func list(_ list: ContextList, by principal: ContextPrincipal) throws(BusError) -> ContextPage {
        let pattern = list.pattern.isEmpty ? nil : try Topic.validatePattern(list.pattern)
        try requireLoaded()
        let limit = list.limit == 0 ? Limits.maxListCount : min(Int(list.limit), Limits.maxListCount)
        let now = WallClock.nowMs()
        return state.withLockedValue { state in
            guard let tenant = state.tenants[principal.tenant] else { return ContextPage(ref: list.ref, heads: []) }
            var heads: [ContextHead] = []
            var bytes = 0
            for id in tenant.entries.keys.sorted() where list.cursor.isEmpty || id > list.cursor {
                guard let head = tenant.entries[id]?.current?.head, head.state == .live, !head.isExpired(now: now),
                    principal.mayRead(head), list.selects(head, pattern: pattern)
                else { continue }
                // A page stays well under the frame limit, whatever the heads hold.
                guard heads.count < limit, bytes < Self.pageBytes else {
                    return ContextPage(ref: list.ref, heads: heads, nextCursor: heads.last?.id ?? "")
                }
                heads.append(head)
                bytes += head.estimatedBytes
            }
            return ContextPage(ref: list.ref, heads: heads)
        }
    }

    /// The kept versions of one context, newest first (`query.selector` of them; 0: all).
    public func history(_ query: ContextQuery, by principal: ContextPrincipal) throws(BusError) -> ContextPage {
        try Identifier.validate(query.id, field: "id")
        try requireLoaded()
        let result = state.withLockedValue { state -> Result<ContextPage, BusError> in
            Result { () throws(BusError) in
                _ = try readable(query.id, by: principal, in: state)
                let versions = state.tenants[principal.tenant]?.entries[query.id]?.versions ?? []
                let count = query.selector == 0 ? versions.count : Int(query.selector)
                return ContextPage(ref: query.ref, heads: versions.reversed().prefix(count).map(\.head))
            }
        }
        return try audited(result, id: query.id, operation: "history", by: principal)
    }

    /// The ancestors (`query.selector` 0: by parent links) or descendants (1) of one context, up
    /// to `query.depth` links away, nearest first; only those `principal` may read.
    public func lineage(_ query: ContextQuery, by principal: ContextPrincipal) throws(BusError) -> ContextPage {
        try Identifier.validate(query.id, field: "id")
        guard query.selector <= 1 else {
            throw BusError(.invalidArgument, "selector must be 0 (ancestors) or 1 (descendants)")
        }
        guard query.depth <= Limits.maxLineageDepth else {
            throw BusError(.invalidArgument, "depth may be at most \(Limits.maxLineageDepth)")
        }
        try requireLoaded()
        let depth = query.depth == 0 ? Limits.maxLineageDepth : query.depth
        let result = state.withLockedValue { state -> Result<ContextPage, BusError> in
            Result { () throws(BusError) in
                let start = try readable(query.id, by: principal, in: state)
                let tenant = state.tenants[principal.tenant] ?? Tenant()
                var seen: Set<String> = [query.id]
                var frontier = [start.head]
                var found: [ContextHead] = []
                for _ in 0..<depth where !frontier.isEmpty {
                    var next: [ContextHead] = []
                    for head in frontier {
                        for link in Self.links(of: head, ancestors: query.selector == 0, in: tenant) {
                            guard seen.insert(link.id).inserted else { continue }
                            next.append(link)
                        }
                    }
                    found += next.filter { principal.mayRead($0) }
                    frontier = next
                }
                return ContextPage(ref: query.ref, heads: Array(found.prefix(Limits.maxListCount)))
            }
        }
        return try audited(result, id: query.id, operation: "lineage", by: principal)
    }

    /// Most estimated bytes of heads in one CONTEXT_PAGE.
    static let pageBytes = 512 << 10

    /// The heads one link from `head`: its parents at the versions it names (the current version
    /// when that one is no longer kept), or the contexts that name it as a parent.
    private static func links(of head: ContextHead, ancestors: Bool, in tenant: Tenant) -> [ContextHead] {
        guard ancestors else {
            return (tenant.children[head.id] ?? []).sorted().compactMap { tenant.entries[$0]?.current?.head }
        }
        return head.attributes.parents.compactMap { parent in
            let versions = tenant.entries[parent.id]?.versions
            return (versions?.first { $0.head.version == parent.version } ?? versions?.last)?.head
        }
    }

    /// The current version of `id` if it exists (a tombstone included) and `principal` may read it.
    func readable(_ id: String, by principal: ContextPrincipal, in state: State) throws(BusError) -> Version {
        guard let current = state.tenants[principal.tenant]?.entries[id]?.current else {
            throw BusError(.unknownContext, "no context \(id)")
        }
        guard principal.mayRead(current.head) else {
            throw BusError(.forbidden, "\(principal.agentID) may not read context \(id)")
        }
        return current
    }

    /// Refuses a tombstone (`unknown_context`, or `context_expired`) and a context past its expiry.
    static func requireLive(_ head: ContextHead, now: UInt64) throws(BusError) {
        switch head.state {
        case .deleted: throw BusError(.unknownContext, "context \(head.id) was deleted")
        case .expired: throw BusError(.contextExpired, "context \(head.id) expired")
        case .live where head.isExpired(now: now): throw BusError(.contextExpired, "context \(head.id) expired")
        case .live: break
        }
    }

    /// `result`'s value, or its error after auditing a refusal of scope.
    func audited<T>(_ result: Result<T, BusError>, id: String, operation: String, by principal: ContextPrincipal)
        throws(BusError) -> T
    {
        if case .failure(let error) = result { denied(error, id: id, operation: operation, by: principal)() }
        return try result.get()
    }
}

extension ContextList {
    /// Whether `head` passes the filters (the caller checks state and scope).
    func selects(_ head: ContextHead, pattern: [Substring]?) -> Bool {
        (kind.isEmpty || head.attributes.kind == kind) && (owner.isEmpty || head.owner == owner)
            && (prefix.isEmpty || head.id.hasPrefix(prefix)) && (pattern.map { Topic.matches($0, head.id) } ?? true)
            && metadata.allSatisfy { head.attributes.metadata.contains($0) }
    }
}

extension ContextHead {
    /// About what the head takes on the wire.
    var estimatedBytes: Int {
        let a = attributes
        let lists =
            (a.readers + a.writers).reduce(0) { $0 + $1.utf8.count + 2 }
            + a.metadata.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 4 }
            + a.parents.reduce(0) { $0 + $1.id.utf8.count + 10 }
        return 160 + id.utf8.count + owner.utf8.count + updatedBy.utf8.count + a.kind.utf8.count + a.label.utf8.count
            + a.source.utf8.count + lists
    }
}
