public import Bus

/// What a writer sets besides a context's body. Every default is safe: a private context of
/// opaque bytes that never expires.
public struct ContextOptions: Sendable {
    /// Who may read and write, checked after the caller's roles.
    public var scope: ContextScope
    /// Agent ids: the members of a `group`, the readers of a `shared` context.
    public var readers: [String]
    /// Agent ids that may write a `shared` or `tenant` context.
    public var writers: [String]
    /// Expiry from the write, in milliseconds (at most ``Limits/maxContextTTLMs``); 0 for never.
    public var ttlMs: UInt64
    /// Free key/value pairs, which ``ACBClient/list(kind:owner:pattern:prefix:metadata:pageSize:)``
    /// filters on. Sent ordered by key.
    public var metadata: [String: String]
    /// A semantic version label such as `1.4.0`; empty for none.
    public var label: String
    /// A free identifier such as `plan` or `conversation`; empty for none.
    public var kind: String
    /// What the body holds: `.json` bodies are checked, kept in canonical form, and may be patched
    /// and watched field by field.
    public var contentType: ContentType
    /// Lineage: the contexts, and their versions, this one was derived from.
    public var parents: [ContextParent]
    /// Lineage: what produced it, such as a message's correlation id; free form.
    public var source: String

    public init(
        scope: ContextScope = .private, readers: [String] = [], writers: [String] = [], ttl: Duration? = nil,
        metadata: [String: String] = [:], label: String = "", kind: String = "", contentType: ContentType = .bytes,
        parents: [ContextParent] = [], source: String = ""
    ) {
        self.scope = scope
        self.readers = readers
        self.writers = writers
        self.ttlMs = ttl.map(Self.milliseconds) ?? 0
        self.metadata = metadata
        self.label = label
        self.kind = kind
        self.contentType = contentType
        self.parents = parents
        self.source = source
    }

    /// The expiry from the write; nil for never. Set, it is rounded up to whole milliseconds.
    public var ttl: Duration? {
        get { ttlMs == 0 ? nil : .milliseconds(ttlMs) }
        set { ttlMs = newValue.map(Self.milliseconds) ?? 0 }
    }

    var attributes: ContextAttributes {
        ContextAttributes(
            kind: kind, contentType: contentType, label: label, scope: scope, readers: readers, writers: writers,
            metadata: Self.entries(metadata), parents: parents, source: source)
    }

    /// These options for a JSON body.
    var json: ContextOptions {
        var options = self
        options.contentType = .json
        return options
    }

    static func entries(_ metadata: [String: String]) -> [MetadataEntry] {
        metadata.sorted { $0.key < $1.key }.map { MetadataEntry(key: $0.key, value: $0.value) }
    }

    /// `duration` in whole milliseconds, rounded up; 0 for none or a negative one.
    static func milliseconds(_ duration: Duration) -> UInt64 {
        guard duration > .zero else { return 0 }
        let (seconds, attoseconds) = duration.components
        let perMillisecond: Int64 = 1_000_000_000_000_000
        return UInt64(min(seconds, 1 << 40)) * 1_000 + UInt64((attoseconds + perMillisecond - 1) / perMillisecond)
    }
}
