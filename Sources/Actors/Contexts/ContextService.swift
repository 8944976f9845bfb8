public import Bus
import NIOConcurrencyHelpers
import NIOCore

/// The contexts of every tenant: their kept versions, writes in flight, watches and lineage.
///
/// The service is the authority while the bus runs: every operation is decided here, under one
/// lock, so compare-and-swap needs no help from the database. With ``ContextStorage`` a write
/// is answered only once committed there (group commit): until then it is *pending* — later
/// writes build on it, but readers and watchers see only committed versions, so nobody sees a
/// version that a crash could take back. A failed commit fails every pending write (each was built
/// on it) and the contexts go back to their committed versions. Without storage, a write commits
/// at once and nothing outlives the process.
public final class ContextService: Sendable {
    /// One kept version.
    struct Version {
        var head: ContextHead
        var body: ByteBuffer
        /// What it costs against ``SupervisorConfiguration/contextBytes``.
        var cost: Int { body.readableBytes + 512 }
    }

    /// One context: committed versions (oldest first, the last is current, maybe a tombstone)
    /// and pending ones.
    struct Entry {
        var versions: [Version] = []
        /// Taken from the front as commits come: O(1) each, however many are in flight.
        var pending = CircularBuffer<Version>(initialCapacity: 1)
        /// The version and revision of the newest version compacted away (0: none).
        var compacted: (version: UInt64, revision: UInt64) = (0, 0)
        /// What the next write builds on.
        var tip: Version? { pending.last ?? versions.last }
        var current: Version? { versions.last }
    }

    struct Tenant {
        var entries: [String: Entry] = [:]
        /// The newest committed revision.
        var revision: UInt64 = 0
        /// The newest revision handed out (pending included).
        var tipRevision: UInt64 = 0
        /// Parent id → ids of the contexts that name it as a parent.
        var children: [String: Set<String>] = [:]
        var watches: [Watch] = []
    }

    /// A write waiting for its commit.
    struct InFlight {
        var tenant: String
        var version: Version
        /// What made it, for the audit stream: an operation's name, or `expire`.
        var operation: String
        var done: @Sendable (Result<ContextHead, BusError>) -> Void
    }

    struct State {
        var tenants: [String: Tenant] = [:]
        /// Pending writes in the order storage was given them (its outcomes come in that order).
        var inFlight = CircularBuffer<InFlight>()
        var bytes = 0
        /// Whether storage was read (always, without storage): until then every operation is
        /// refused, since the bus does not know the contexts yet.
        var loaded = false
    }

    /// What to do once the lock is released: answers and audit events.
    typealias Effects = [@Sendable () -> Void]

    let configuration: SupervisorConfiguration
    let storage: (any ContextStorage)?
    let state = NIOLockedValueBox(State())
    /// Offers an audit event (kind, tenant, agent, detail).
    let record: @Sendable (String, String, String, [String: String]) -> Void
    /// Keeps a copy of each committed version outside the process (Redis), if set.
    let mirror: (@Sendable (ContextRecord) -> Void)?

    /// - Parameters:
    ///   - record: offers an audit event: kind, tenant, agent id, detail.
    ///   - mirror: called with each committed version, in order (write-behind copies).
    public init(
        configuration: SupervisorConfiguration, storage: (any ContextStorage)?,
        record: @escaping @Sendable (String, String, String, [String: String]) -> Void,
        mirror: (@Sendable (ContextRecord) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.storage = storage
        self.record = record
        self.mirror = mirror
        state.withLockedValue { $0.loaded = storage == nil }
        storage?.start { [weak self] outcome in self?.storageReported(outcome) }
    }

    /// Puts back what storage kept (every kept version, oldest first per context); call at start,
    /// before agents connect. A version it has already, or has a newer one of, is skipped (in a
    /// cluster, versions other nodes committed may have come first).
    public func restore(_ records: [ContextRecord]) {
        state.withLockedValue { state in
            state.loaded = true
            for record in records {
                if let kept = state.tenants[record.tenant]?.entries[record.head.id]?.versions.last,
                    kept.head.version >= record.head.version
                {
                    continue
                }
                let version = Version(head: record.head, body: ByteBuffer(bytes: record.body))
                var tenant = state.tenants.removeValue(forKey: record.tenant) ?? Tenant()
                var entry = tenant.entries.removeValue(forKey: record.head.id) ?? Entry()
                if entry.versions.isEmpty, record.head.version > 1 {
                    entry.compacted = (record.head.version - 1, record.head.revision - 1)
                }
                entry.versions.append(version)
                state.bytes += version.cost
                for parent in record.head.attributes.parents {
                    tenant.children[parent.id, default: []].insert(record.head.id)
                }
                tenant.entries[record.head.id] = entry
                tenant.revision = max(tenant.revision, record.head.revision)
                tenant.tipRevision = tenant.revision
                state.tenants[record.tenant] = tenant
            }
        }
    }

    /// Refuses operations until storage was read (it only ever goes from unread to read).
    func requireLoaded() throws(BusError) {
        guard state.withLockedValue({ $0.loaded }) else {
            throw BusError(.storageUnavailable, "contexts are not read from durable storage yet", retryAfterMs: 1_000)
        }
    }

    // MARK: - Commits

    /// Records `version` of `tenant` as pending and hands it to storage, or commits it at once
    /// without storage. Runs under the lock.
    func enqueue(
        _ version: Version, tenant: String, operation: String, in state: inout State,
        done: @escaping @Sendable (Result<ContextHead, BusError>) -> Void
    ) -> Effects {
        if let storage {
            let record = ContextRecord(tenant: tenant, head: version.head, body: Array(version.body.readableBytesView))
            guard storage.submit(record, keep: configuration.contextHistory) else {
                let error = BusError(
                    .storageUnavailable, "durable storage cannot take context writes now", retryAfterMs: 1_000)
                return [{ done(.failure(error)) }]
            }
        }
        state.tenants[tenant, default: Tenant()].entries[version.head.id, default: Entry()].pending.append(version)
        state.tenants[tenant]?.tipRevision = version.head.revision
        state.bytes += version.cost
        let write = InFlight(tenant: tenant, version: version, operation: operation, done: done)
        guard storage != nil else { return commit(write, in: &state) }
        state.inFlight.append(write)
        return []
    }

    /// What storage reported, in submission order.
    private func storageReported(_ outcome: ContextStorageOutcome) {
        let effects = state.withLockedValue { state -> Effects in
            switch outcome {
            case .committed(let records):
                return records.indices.flatMap { _ in
                    state.inFlight.popFirst().map { commit($0, in: &state) } ?? []
                }
            case .failed(_, let error):
                return failEverything(error, in: &state)
            }
        }
        for effect in effects { effect() }
    }

    /// A commit failed: every pending write was built on it or after it. Storage forgets what it
    /// still queues, each context goes back to its committed version, and every writer hears why.
    private func failEverything(_ error: BusError, in state: inout State) -> Effects {
        _ = storage?.discardQueued()
        let failed = state.inFlight
        state.inFlight.removeAll()
        for (name, tenant) in state.tenants { state.tenants[name]?.tipRevision = tenant.revision }
        for write in failed {
            state.bytes -= write.version.cost
            state.tenants[write.tenant]?.entries[write.version.head.id]?.pending.removeAll()
            if state.tenants[write.tenant]?.entries[write.version.head.id]?.versions.isEmpty ?? false {
                state.tenants[write.tenant]?.entries[write.version.head.id] = nil
            }
        }
        return failed.map { write in { write.done(.failure(error)) } }
    }

    /// Makes the oldest pending version of its context the current one (``install(_:tenant:pending:in:)``),
    /// and returns the writer's answer and the audit event.
    private func commit(_ write: InFlight, in state: inout State) -> Effects {
        let head = write.version.head
        let previous = install(write.version, tenant: write.tenant, pending: true, in: &state)
        let kind = Self.eventKind(head, previous: previous?.head)
        let detail = [
            "id": head.id, "version": "\(head.version)", "revision": "\(head.revision)",
            "operation": write.operation,
        ]
        let mirrored = mirror.map { _ in
            ContextRecord(tenant: write.tenant, head: head, body: Array(write.version.body.readableBytesView))
        }
        return [
            { [self] in
                self.record("context.\(kind.name)", write.tenant, head.updatedBy, detail)
                if let mirrored { mirror?(mirrored) }
                write.done(.success(head))
            }
        ]
    }

    /// Makes `version` the current version of its context (taking it from the pending ones when
    /// `pending`): compacts, links its parents, offers it to the watches. Runs under the lock.
    /// - Returns: the version it follows.
    @discardableResult
    private func install(_ version: Version, tenant name: String, pending: Bool, in state: inout State) -> Version? {
        let head = version.head
        // Taken out of their dictionaries while they change, so their buffers stay uniquely
        // referenced and change in place instead of being copied on every commit.
        var tenant = state.tenants.removeValue(forKey: name) ?? Tenant()
        defer { state.tenants[name] = tenant }
        var entry = tenant.entries.removeValue(forKey: head.id) ?? Entry()
        let previous = entry.current
        if pending { _ = entry.pending.popFirst() }
        entry.versions.append(version)
        while entry.versions.count > configuration.contextHistory {
            let old = entry.versions.removeFirst()
            entry.compacted = (old.head.version, old.head.revision)
            state.bytes -= old.cost
        }
        tenant.entries[head.id] = entry
        tenant.revision = max(tenant.revision, head.revision)
        tenant.tipRevision = max(tenant.tipRevision, head.revision)
        for parent in head.attributes.parents { tenant.children[parent.id, default: []].insert(head.id) }
        notify(&tenant, change: version, previous: previous)
        return previous
    }

    /// Versions the home of their tenant's contexts committed, on another node of the cluster
    /// (docs/cluster.md), or read again from storage: each is kept and offered to this node's
    /// watches as if committed here, in order; one this node has already, or has a newer version
    /// of, is skipped.
    public func apply(_ records: [ContextRecord]) {
        state.withLockedValue { state in
            for record in records {
                let entry = state.tenants[record.tenant]?.entries[record.head.id]
                guard (entry?.tip?.head.version ?? 0) < record.head.version else { continue }
                let version = Version(head: record.head, body: ByteBuffer(bytes: record.body))
                state.bytes += version.cost
                install(version, tenant: record.tenant, pending: false, in: &state)
            }
        }
    }

    /// What a change from `previous` to `head` is, for watchers and the audit stream.
    static func eventKind(_ head: ContextHead, previous: ContextHead?) -> ContextEventKind {
        switch head.state {
        case .deleted: .deleted
        case .expired: .expired
        case .live:
            previous.map { $0.state == .live && !$0.isExpired(now: head.updatedMs) } ?? false ? .updated : .created
        }
    }
}
