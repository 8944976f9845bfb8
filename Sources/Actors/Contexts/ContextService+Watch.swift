public import Bus
import NIOConcurrencyHelpers
import NIOCore

extension ContextService {
    /// Starts watch `watch.ref` of `watcher`: offers what `watch.start` asks for (nothing, the
    /// changes after a position, or a snapshot), then every committed change it matches, in commit
    /// order. Replay and registration happen under one lock, so nothing is missed or repeated.
    /// - Returns: the CONTEXT_WATCHING answer: the position it starts from, and how many events it
    ///   replayed first.
    @discardableResult
    public func watch(_ watch: ContextWatch, by principal: ContextPrincipal, watcher: any ContextWatcher)
        throws(BusError) -> ContextWatching
    {
        let target: Watch.Target
        if Topic.isPattern(watch.target) {
            target = .pattern(try Topic.validatePattern(watch.target))
        } else {
            try Identifier.validate(watch.target, field: "target")
            target = .id(watch.target)
        }
        guard watch.paths.count <= Limits.maxWatchPaths else {
            throw BusError(.invalidArgument, "a watch names at most \(Limits.maxWatchPaths) paths")
        }
        var paths: [JSONPointer] = []
        for path in watch.paths { paths.append(try JSONPointer(path)) }
        try requireLoaded()
        let now = WallClock.nowMs()
        let result = state.withLockedValue { state -> Result<ContextWatching, BusError> in
            Result { () throws(BusError) in
                var tenant = state.tenants[principal.tenant] ?? Tenant()
                if !paths.isEmpty, case .id(let id) = target,
                    tenant.entries[id]?.current?.head.attributes.contentType == .sealed
                {
                    throw BusError(.sealedBody, "\(id) is sealed: the bus cannot watch its fields")
                }
                let held = tenant.watches.filter { $0.watcher === watcher }
                guard !held.contains(where: { $0.ref == watch.ref }) else {
                    throw BusError(.invalidArgument, "watch \(watch.ref) is already running")
                }
                guard held.count < configuration.maxWatchesPerSession else {
                    throw BusError(.overloaded, "at most \(configuration.maxWatchesPerSession) watches per session")
                }
                var registered = Watch(
                    watcher: watcher, ref: watch.ref, principal: principal, target: target, paths: paths,
                    position: watch.after)
                let (replay, position) = try Self.replay(watch, registered, in: tenant, now: now)
                var replayed: UInt32 = 0
                for (version, previous, kind) in replay {
                    guard let event = Self.event(version, previous: previous, kind: kind, for: registered) else {
                        continue
                    }
                    guard watcher.offer(event) else {
                        // Changes replayed in order end after what fit, as a watch that fell behind
                        // does; a snapshot (in id order) cannot be taken in parts.
                        guard watch.start == .after, replayed > 0 else {
                            throw BusError(.overloaded, "the watch's first events do not fit the session's queue")
                        }
                        watcher.lagged(watch: watch.ref, after: registered.position)
                        return ContextWatching(ref: watch.ref, position: registered.position, replayed: replayed)
                    }
                    replayed += 1
                    if watch.start == .after { registered.position = registered.position(of: version.head) }
                }
                registered.position = position
                tenant.watches.append(registered)
                state.tenants[principal.tenant] = tenant
                return ContextWatching(ref: watch.ref, position: position, replayed: replayed)
            }
        }
        return try audited(result, id: watch.target, operation: "watch", by: principal)
    }

    /// Ends watch `ref` of `watcher`. - Returns: false if it had none by that ref.
    public func unwatch(_ ref: UInt64, watcher: any ContextWatcher) -> Bool {
        state.withLockedValue { state in
            for (name, tenant) in state.tenants {
                guard let index = tenant.watches.firstIndex(where: { $0.watcher === watcher && $0.ref == ref }) else {
                    continue
                }
                state.tenants[name]?.watches.remove(at: index)
                return true
            }
            return false
        }
    }

    /// Ends every watch of `watcher` (its connection closed).
    public func unwatchAll(_ watcher: any ContextWatcher) {
        state.withLockedValue { state in
            for name in state.tenants.keys
            where state.tenants[name]?.watches.contains(where: { $0.watcher === watcher }) ?? false {
                state.tenants[name]?.watches.removeAll { $0.watcher === watcher }
            }
        }
    }

    /// Offers a committed change to every watch of the tenant that matches it and may read it; a
    /// watch whose watcher is full ends. Runs under the lock, in commit order.
    func notify(_ tenant: inout Tenant, change: Version, previous: Version?) {
        var ended: [Int] = []
        for index in tenant.watches.indices where tenant.watches[index].target.matches(change.head.id) {
            let watch = tenant.watches[index]
            guard watch.principal.mayRead(change.head) else { continue }
            if let event = Self.event(change, previous: previous, kind: nil, for: watch), !watch.watcher.offer(event) {
                ended.append(index)
                watch.watcher.lagged(watch: watch.ref, after: watch.position)
                continue
            }
            tenant.watches[index].position = watch.position(of: change.head)
        }
        for index in ended.reversed() { tenant.watches.remove(at: index) }
    }

    /// What a new watch replays, and the position it starts from. Refuses a position the bus no
    /// longer keeps (`compacted`) or never reached (`invalid_argument`).
    private static func replay(
        _ watch: ContextWatch, _ registered: Watch, in tenant: Tenant, now: UInt64
    ) throws(BusError) -> (events: [(Version, Version?, ContextEventKind?)], position: UInt64) {
        let principal = registered.principal
        switch registered.target {
        case .id(let id):
            let entry = tenant.entries[id]
            if let current = entry?.current, !principal.mayRead(current.head) {
                throw BusError(.forbidden, "\(principal.agentID) may not read context \(id)")
            }
            let position = entry?.current?.head.version ?? 0
            switch watch.start {
            case .now:
                return ([], position)
            case .snapshot:
                guard let current = entry?.current, current.head.state == .live, !current.head.isExpired(now: now)
                else {
                    return ([], position)
                }
                return ([(current, nil, .snapshot)], position)
            case .after:
                guard watch.after <= position else {
                    throw BusError(.invalidArgument, "after \(watch.after) is beyond version \(position) of \(id)")
                }
                let versions = entry?.versions ?? []
                if let oldest = entry.flatMap({ oldestKept($0, after: watch.after, position: { $0.version }) }) {
                    throw .compacted(oldest: oldest, "changes after \(watch.after) are no longer kept")
                }
                let replay = versions.indices.filter { versions[$0].head.version > watch.after }.map {
                    (versions[$0], $0 > 0 ? versions[$0 - 1] : nil, ContextEventKind?.none)
                }
                return (replay, position)
            }
        case .pattern:
            let matching = tenant.entries.filter { registered.target.matches($0.key) }
            switch watch.start {
            case .now:
                return ([], tenant.revision)
            case .snapshot:
                let current = matching.keys.sorted().compactMap { matching[$0]?.current }.filter {
                    $0.head.state == .live && !$0.head.isExpired(now: now) && principal.mayRead($0.head)
                }
                return (current.map { ($0, nil, .snapshot) }, tenant.revision)
            case .after:
                guard watch.after <= tenant.revision else {
                    throw BusError(.invalidArgument, "after \(watch.after) is beyond revision \(tenant.revision)")
                }
                var replay: [(Version, Version?, ContextEventKind?)] = []
                // Every context is checked, so the error names the oldest revision all of them keep.
                let oldest = matching.values.compactMap {
                    oldestKept($0, after: watch.after, position: { $0.revision })
                }
                if let oldest = oldest.max() {
                    throw .compacted(oldest: oldest, "changes after \(watch.after) are no longer kept")
                }
                for entry in matching.values {
                    let versions = entry.versions
                    for index in versions.indices
                    where versions[index].head.revision > watch.after && principal.mayRead(versions[index].head) {
                        replay.append((versions[index], index > 0 ? versions[index - 1] : nil, nil))
                    }
                }
                return (replay.sorted { $0.0.head.revision < $1.0.head.revision }, tenant.revision)
            }
        }
    }

    /// The oldest position after which a watch can resume on `entry`, if `after` is older: once
    /// versions were compacted, the change after `after`, and the version before it, must be kept.
    private static func oldestKept(_ entry: Entry, after: UInt64, position: (ContextHead) -> UInt64) -> UInt64? {
        guard entry.compacted.version > 0, let oldest = entry.versions.first, after < position(oldest.head) else {
            return nil
        }
        return position(oldest.head)
    }

    /// The event `watch` gets for `version` (nil: a field-level watch whose paths it does not touch).
    static func event(_ version: Version, previous: Version?, kind: ContextEventKind?, for watch: Watch)
        -> ContextEvent?
    {
        let head = version.head
        let kind = kind ?? eventKind(head, previous: previous?.head)
        guard !watch.paths.isEmpty else {
            let carried = head.state == .live && version.body.readableBytes <= Limits.maxEventBody
            return ContextEvent(
                watch: watch.ref, kind: kind, head: head, payloadKind: carried ? .body : .none,
                payload: carried ? version.body : ByteBuffer())
        }
        guard head.attributes.contentType == .json else { return nil }
        let patch = JSONPatch.diff(
            from: document(previous), to: document(version), restrictedTo: watch.paths)
        guard !patch.operations.isEmpty || kind == .snapshot else { return nil }
        return ContextEvent(
            watch: watch.ref, kind: kind, head: head, payloadKind: .patch,
            payload: ByteBuffer(bytes: patch.serialized()))
    }

    /// The JSON a version holds; an empty object for none, a tombstone or a bytes context.
    private static func document(_ version: Version?) -> JSONValue {
        guard let version, version.head.state == .live, version.head.attributes.contentType == .json,
            let value = try? JSONValue(parsing: version.body.readableBytesView)
        else { return .object([:]) }
        return value
    }
}
