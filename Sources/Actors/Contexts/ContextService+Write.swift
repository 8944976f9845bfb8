public import Bus
import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore

extension ContextService {
    /// Applies `write` for `principal`; `done` runs once the new version is committed, or with why
    /// not (nothing changed then), from any thread.
    public func write(
        _ write: ContextWrite, by principal: ContextPrincipal,
        done: @escaping @Sendable (Result<ContextHead, BusError>) -> Void
    ) {
        let change: Change
        do {
            change = try Change(write)
            try requireLoaded()
        } catch {
            return done(.failure(error))
        }
        let now = WallClock.nowMs()
        let effects = state.withLockedValue { state -> Effects in
            do throws(BusError) {
                let version = try nextVersion(change, by: principal, now: now, in: &state)
                return enqueue(
                    version, tenant: principal.tenant, operation: write.operation.name, in: &state, done: done)
            } catch {
                return [
                    denied(error, id: write.id, operation: write.operation.name, by: principal),
                    { done(.failure(error)) },
                ]
            }
        }
        for effect in effects { effect() }
    }

    /// Writes a tombstone of kind `expired` for each context whose expiry has passed, at most
    /// `limit` per call (the next sweep takes the rest). A failed write is tried again next time.
    /// - Parameter writesHere: whether this node writes the tenant's contexts (in a cluster, only
    ///   their home does).
    public func sweep(now: UInt64, limit: Int = 1_024, writesHere: (String) -> Bool = { _ in true }) {
        let effects = state.withLockedValue { state -> Effects in
            var effects: Effects = []
            var swept = 0
            for (name, tenant) in state.tenants where writesHere(name) {
                for entry in tenant.entries.values where swept < limit {
                    guard let tip = entry.tip, tip.head.state == .live, tip.head.isExpired(now: now) else { continue }
                    swept += 1
                    var head = tip.head
                    head.version += 1
                    head.revision = (state.tenants[name]?.tipRevision ?? 0) + 1
                    head.state = .expired
                    head.updatedBy = ""
                    head.updatedMs = now
                    head.expiresMs = 0
                    head.size = 0
                    head.checksum = Self.emptyChecksum
                    effects += enqueue(
                        Version(head: head, body: ByteBuffer()), tenant: name, operation: "expire", in: &state,
                        done: { _ in })
                }
            }
            return effects
        }
        for effect in effects { effect() }
    }

    /// Audits a refusal of scope (`context.denied`); other refusals are not audited here.
    func denied(_ error: BusError, id: String, operation: String, by principal: ContextPrincipal)
        -> @Sendable () -> Void
    {
        guard error.code == .forbidden else { return {} }
        return { [record] in
            record("context.denied", principal.tenant, principal.agentID, ["id": id, "operation": operation])
        }
    }

    static let emptyChecksum = Array(SHA256.hash(data: [UInt8]()))

    /// The version `change` makes of its context, built on the context's tip. Runs under the lock.
    private func nextVersion(
        _ change: Change, by principal: ContextPrincipal, now: UInt64, in state: inout State
    ) throws(BusError) -> Version {
        let write = change.write
        let tenant = state.tenants[principal.tenant]
        let tip = tenant?.entries[write.id]?.tip
        let live = tip.flatMap { $0.head.state == .live && !$0.head.isExpired(now: now) ? $0 : nil }
        if let live {
            guard principal.mayWrite(live.head) else {
                throw BusError(.forbidden, "\(principal.agentID) may not write context \(write.id)")
            }
            if let attributes = write.attributes, !attributes.sameGrants(as: live.head.attributes),
                !principal.mayGrant(live.head)
            {
                throw BusError(.forbidden, "only the owner changes the scope, readers or writers of \(write.id)")
            }
        }
        try Self.checkExpected(write, live: live?.head, tip: tip?.head, now: now)
        let attributes = write.attributes ?? live?.head.attributes ?? ContextAttributes()
        let body = try Self.body(of: change, live: live, contentType: attributes.contentType)
        // A body sent inline stops at the inline limit; one uploaded as a stream, or made by a
        // patch, at the limit of context bodies.
        let inline = write.bodyStream.isEmpty && [.put, .create, .update].contains(write.operation)
        let limit = inline ? Int(configuration.limits.maxInlinePayload) : configuration.contextBodyBytes
        guard body.readableBytes <= limit else {
            throw BusError(
                .tooLarge,
                "the body of \(body.readableBytes) bytes is over \(limit)\(inline ? "; upload it as a stream" : "")")
        }
        guard state.bytes + body.readableBytes + 512 <= configuration.contextBytes else {
            throw BusError(.overloaded, "the bus holds as many context bytes as it may", retryAfterMs: 1_000)
        }
        let expires: UInt64 =
            switch write.operation {
            case .delete: 0
            case .put, .create: write.ttlMs == 0 ? 0 : now + write.ttlMs
            default: write.ttlMs == 0 ? live?.head.expiresMs ?? 0 : now + write.ttlMs
            }
        let head = ContextHead(
            id: write.id, owner: live?.head.owner ?? principal.agentID, attributes: attributes,
            version: (tip?.head.version ?? 0) + 1, revision: (tenant?.tipRevision ?? 0) + 1,
            checksum: write.operation == .delete
                ? Self.emptyChecksum : body.withUnsafeReadableBytes { Array(SHA256.hash(data: $0)) },
            size: write.operation == .delete ? 0 : UInt64(body.readableBytes), createdMs: live?.head.createdMs ?? now,
            updatedMs: now, updatedBy: principal.agentID, expiresMs: expires,
            state: write.operation == .delete ? .deleted : .live)
        return Version(head: head, body: write.operation == .delete ? ByteBuffer() : body)
    }

    /// Checks that the context is where `write` expects it: absent for create, live for changes,
    /// at `expected_version` when one is given.
    private static func checkExpected(
        _ write: ContextWrite, live: ContextHead?, tip: ContextHead?, now: UInt64
    ) throws(BusError) {
        switch write.operation {
        case .create:
            if let live { throw .versionConflict(current: live.version, "\(write.id) exists") }
        case .put:
            break
        case .update, .mergePatch, .jsonPatch, .delete, .touch:
            guard live != nil else {
                if let tip, tip.state == .expired || tip.isExpired(now: now) {
                    throw BusError(.contextExpired, "context \(write.id) expired")
                }
                throw BusError(.unknownContext, "no context \(write.id)")
            }
        }
        if write.expectedVersion != 0, write.expectedVersion != live?.version ?? 0 {
            throw .versionConflict(current: live?.version ?? 0, "expected version \(write.expectedVersion)")
        }
    }

    /// The new body: the one sent, the patched current one, or the current one (touch).
    private static func body(of change: Change, live: Version?, contentType: ContentType) throws(BusError) -> ByteBuffer
    {
        switch change.write.operation {
        case .put, .create, .update:
            if contentType == .json { _ = try JSONValue(parsing: change.write.body.readableBytesView) }
            return change.write.body
        case .mergePatch, .jsonPatch:
            if live?.head.attributes.contentType == .sealed {
                throw BusError(.sealedBody, "the context is sealed: the bus cannot patch it; write the whole body")
            }
            guard let live, live.head.attributes.contentType == .json else {
                throw BusError(.patchFailed, "patches apply to application/json contexts only")
            }
            let document = try JSONValue(parsing: live.body.readableBytesView)
            let patched =
                switch change.patch {
                case .merge(let patch): JSONMergePatch.apply(patch, to: document)
                case .json(let patch): try patch.apply(to: document)
                case nil: document
                }
            return ByteBuffer(bytes: patched.serialized())
        case .touch:
            return live?.body ?? ByteBuffer()
        case .delete:
            return ByteBuffer()
        }
    }
}

/// A CONTEXT_WRITE checked as far as it can be without the context: fields and patch documents.
struct Change {
    enum Patch {
        case merge(JSONValue)
        case json(JSONPatch)
    }

    let write: ContextWrite
    let patch: Patch?

    init(_ write: ContextWrite) throws(BusError) {
        try Identifier.validate(write.id, field: "id")
        guard write.ttlMs <= Limits.maxContextTTLMs else {
            throw BusError(.invalidArgument, "ttl_ms \(write.ttlMs) is over the limit of \(Limits.maxContextTTLMs)")
        }
        if write.operation == .touch, write.ttlMs == 0 {
            throw BusError(.invalidArgument, "touch needs a ttl_ms")
        }
        if write.operation == .create, write.expectedVersion != 0 {
            throw BusError(.invalidArgument, "create expects no version")
        }
        var write = write
        try write.attributes?.validate()
        if let sorted = write.attributes?.sortedMetadata { write.attributes?.metadata = sorted }
        self.write = write
        switch write.operation {
        case .mergePatch: patch = .merge(try JSONValue(parsing: write.body.readableBytesView))
        case .jsonPatch: patch = .json(try JSONPatch(parsing: write.body.readableBytesView))
        default: patch = nil
        }
    }
}

extension ContextHead {
    /// Whether its expiry has passed at `now` (Unix ms).
    func isExpired(now: UInt64) -> Bool { expiresMs != 0 && expiresMs <= now }
}

extension ContextAttributes {
    /// Whether `other` grants the same scope to the same agents.
    func sameGrants(as other: ContextAttributes) -> Bool {
        scope == other.scope && Set(readers) == Set(other.readers) && Set(writers) == Set(other.writers)
    }

    /// The metadata sorted by key, one entry per key (the last one sent wins), as storage keeps it.
    var sortedMetadata: [MetadataEntry] {
        Dictionary(metadata.map { ($0.key, $0.value) }) { _, last in last }.sorted { $0.key < $1.key }.map {
            MetadataEntry(key: $0.key, value: $0.value)
        }
    }

    /// Checks every field: identifiers where identifiers go, lengths, no NUL in free text.
    func validate() throws(BusError) {
        if !kind.isEmpty { try Identifier.validate(kind, field: "kind") }
        guard label.utf8.count <= Limits.maxIdentifierBytes, source.utf8.count <= Limits.maxIdentifierBytes else {
            throw BusError(.invalidArgument, "label and source may be at most \(Limits.maxIdentifierBytes) bytes")
        }
        for reader in readers { try Identifier.validate(reader, field: "readers") }
        for writer in writers { try Identifier.validate(writer, field: "writers") }
        for parent in parents { try Identifier.validate(parent.id, field: "parents.id") }
        guard !([label, source] + metadata.map(\.value)).contains(where: { $0.utf8.contains(0) }) else {
            throw BusError(.invalidArgument, "label, source and metadata values may not contain NUL")
        }
        for entry in metadata {
            try Identifier.validate(entry.key, field: "metadata.key")
            guard entry.value.utf8.count <= Limits.maxMetadataValueBytes else {
                throw BusError(.invalidArgument, "metadata values may be at most \(Limits.maxMetadataValueBytes) bytes")
            }
        }
        if scope == .group, !writers.isEmpty {
            throw BusError(.invalidArgument, "a group context has members (readers) only, no writers")
        }
    }
}
