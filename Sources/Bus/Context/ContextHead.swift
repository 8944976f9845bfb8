import NIOCore

/// Who may read and write a context, checked on every operation after the caller's roles.
public enum ContextScope: UInt8, Sendable, CaseIterable {
    /// The owner only.
    case `private` = 0
    /// The owner and the agents listed in `readers`, who may read and write.
    case group = 1
    /// The owner; `readers` read, `writers` read and write.
    case shared = 2
    /// Every agent of the tenant reads; the owner and `writers` write.
    case tenant = 3

    /// The scope's name in JSON and the audit stream.
    public var name: String {
        switch self {
        case .private: "private"
        case .group: "group"
        case .shared: "shared"
        case .tenant: "tenant"
        }
    }

    /// The scope named `name`, if any.
    public init?(name: String) {
        guard let scope = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = scope
    }
}

/// What a context's body holds.
public enum ContentType: UInt8, Sendable, CaseIterable {
    /// Opaque bytes: no patches, no field-level watches.
    case bytes = 0
    /// One JSON value (RFC 8259), checked on every write; a patch's result is written in canonical
    /// form (sorted keys, no whitespace), a body sent whole is kept as sent.
    case json = 1
    /// Sealed by its writer for its readers (end-to-end encryption, docs/protocol.md 5.16): opaque
    /// to the bus, which refuses patches and field-level watches with `sealed_body`.
    case sealed = 2

    /// The MIME type.
    public var mime: String {
        switch self {
        case .bytes: "application/octet-stream"
        case .json: "application/json"
        case .sealed: "application/vnd.acb.sealed"
        }
    }

    /// The content type of MIME type `mime`, if it is one of these.
    public init?(mime: String) {
        guard let type = Self.allCases.first(where: { $0.mime == mime }) else { return nil }
        self = type
    }
}

/// Whether a context version is live or a tombstone.
public enum ContextState: UInt8, Sendable {
    case live = 0
    /// Deleted by a writer; the id may be created again, with the next version.
    case deleted = 1
    /// Removed by the expiry sweeper.
    case expired = 2
}

/// A context this one was derived from, and the version used.
public struct ContextParent: Sendable, Hashable {
    public var id: String
    public var version: UInt64

    public init(id: String, version: UInt64) {
        self.id = id
        self.version = version
    }
}

/// What a writer sets besides the body; kept unchanged by writes that do not carry it.
public struct ContextAttributes: Sendable, Equatable {
    /// A free identifier such as `plan` or `conversation` (empty for none).
    public var kind: String
    public var contentType: ContentType
    /// An optional semantic version label such as `1.4.0` (empty for none).
    public var label: String
    public var scope: ContextScope
    /// Agent ids: members of a `group`, readers of a `shared` context.
    public var readers: [String]
    /// Agent ids that may write a `shared` or `tenant` context.
    public var writers: [String]
    public var metadata: [MetadataEntry]
    /// Lineage: the contexts this one was derived from.
    public var parents: [ContextParent]
    /// Lineage: the message or request (its correlation id) that produced it; free form, may be empty.
    public var source: String

    public init(
        kind: String = "", contentType: ContentType = .bytes, label: String = "", scope: ContextScope = .private,
        readers: [String] = [], writers: [String] = [], metadata: [MetadataEntry] = [],
        parents: [ContextParent] = [], source: String = ""
    ) {
        self.kind = kind
        self.contentType = contentType
        self.label = label
        self.scope = scope
        self.readers = readers
        self.writers = writers
        self.metadata = metadata
        self.parents = parents
        self.source = source
    }

    init(reading r: inout WireReader) throws(BusError) {
        let kind = try r.string("kind")
        let rawType = try r.u8("content_type")
        guard let contentType = ContentType(rawValue: rawType) else {
            throw BusError(.badFrame, "unknown content type \(rawType)")
        }
        let label = try r.string("label")
        let rawScope = try r.u8("scope")
        guard let scope = ContextScope(rawValue: rawScope) else {
            throw BusError(.badFrame, "unknown scope \(rawScope)")
        }
        self.init(
            kind: kind, contentType: contentType, label: label, scope: scope,
            readers: try r.list("readers") { (r: inout WireReader) throws(BusError) in try r.string("reader") },
            writers: try r.list("writers") { (r: inout WireReader) throws(BusError) in try r.string("writer") },
            metadata: try r.metadata(),
            parents: try r.list("parents") { (r: inout WireReader) throws(BusError) in
                ContextParent(id: try r.string("parent.id"), version: try r.u64("parent.version"))
            },
            source: try r.string("source"))
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(kind)
        b.writeInteger(contentType.rawValue)
        b.writeWireString(label)
        b.writeInteger(scope.rawValue)
        b.writeWireList(readers) { $0.writeWireString($1) }
        b.writeWireList(writers) { $0.writeWireString($1) }
        b.writeWireMetadata(metadata)
        b.writeWireList(parents) {
            $0.writeWireString($1.id)
            $0.writeInteger($1.version)
        }
        b.writeWireString(source)
    }
}

/// Everything about one version of a context except its body: what GET, LIST, HISTORY, LINEAGE
/// and watch events describe.
public struct ContextHead: Sendable, Equatable {
    public var id: String
    public var owner: String
    public var attributes: ContextAttributes
    /// 1 for the first version, +1 on every change (deletion and expiry included).
    public var version: UInt64
    /// The tenant's revision of this change: +1 for every change of any context of the tenant.
    public var revision: UInt64
    /// SHA-256 of the body.
    public var checksum: [UInt8]
    public var size: UInt64
    /// Unix milliseconds.
    public var createdMs: UInt64
    public var updatedMs: UInt64
    /// The agent that made this version.
    public var updatedBy: String
    /// Unix milliseconds after which the context expires; 0 for never.
    public var expiresMs: UInt64
    public var state: ContextState

    public init(
        id: String, owner: String, attributes: ContextAttributes, version: UInt64, revision: UInt64,
        checksum: [UInt8], size: UInt64, createdMs: UInt64, updatedMs: UInt64, updatedBy: String,
        expiresMs: UInt64, state: ContextState = .live
    ) {
        self.id = id
        self.owner = owner
        self.attributes = attributes
        self.version = version
        self.revision = revision
        self.checksum = checksum
        self.size = size
        self.createdMs = createdMs
        self.updatedMs = updatedMs
        self.updatedBy = updatedBy
        self.expiresMs = expiresMs
        self.state = state
    }

    /// The checksum in lowercase hex, as JSON and the audit stream write it.
    public var checksumHex: String { checksum.lowercaseHex }

    init(reading r: inout WireReader) throws(BusError) {
        let id = try r.string("id")
        let owner = try r.string("owner")
        let attributes = try ContextAttributes(reading: &r)
        let version = try r.u64("version")
        let revision = try r.u64("revision")
        let checksum = try r.fixed(32, "checksum")
        let size = try r.u64("size")
        let created = try r.u64("created_ms")
        let updated = try r.u64("updated_ms")
        let updatedBy = try r.string("updated_by")
        let expires = try r.u64("expires_ms")
        let rawState = try r.u8("state")
        guard let state = ContextState(rawValue: rawState) else {
            throw BusError(.badFrame, "unknown state \(rawState)")
        }
        self.init(
            id: id, owner: owner, attributes: attributes, version: version, revision: revision, checksum: checksum,
            size: size, createdMs: created, updatedMs: updated, updatedBy: updatedBy, expiresMs: expires, state: state)
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(id)
        b.writeWireString(owner)
        attributes.write(to: &b)
        b.writeMultipleIntegers(version, revision)
        b.writeBytes(checksum)
        b.writeMultipleIntegers(size, createdMs, updatedMs)
        b.writeWireString(updatedBy)
        b.writeMultipleIntegers(expiresMs, state.rawValue)
    }
}
