public import NIOCore

/// What a CONTEXT_WRITE does.
public enum ContextOperation: UInt8, Sendable, CaseIterable {
    /// Create the context, or replace its body (and attributes, if sent).
    case put = 0
    /// Create the context; refused with `version_conflict` if it exists.
    case create = 1
    /// Replace the body (and attributes, if sent) of an existing context.
    case update = 2
    /// Apply an RFC 7396 JSON Merge Patch (the frame's body) to a JSON context.
    case mergePatch = 3
    /// Apply an RFC 6902 JSON Patch (the frame's body) to a JSON context.
    case jsonPatch = 4
    case delete = 5
    /// Set a new expiry (`ttl_ms` from now) without changing the body.
    case touch = 6

    /// The operation's name in JSON and the audit stream.
    public var name: String {
        switch self {
        case .put: "put"
        case .create: "create"
        case .update: "update"
        case .mergePatch: "merge_patch"
        case .jsonPatch: "json_patch"
        case .delete: "delete"
        case .touch: "touch"
        }
    }
}

/// CONTEXT_WRITE: every change of a context. The answer is CONTEXT with the new version's head
/// (no body), or ERROR.
public struct ContextWrite: FrameBody {
    public var ref: UInt64
    public var operation: ContextOperation
    public var id: String
    /// The version the writer expects to replace; 0 for no check (create always expects none).
    public var expectedVersion: UInt64
    /// Expiry from now, in ms; 0 means none for put and create, and "keep" for the others.
    public var ttlMs: UInt64
    /// Attributes to set (nil: keep the current ones, or the defaults for a new context).
    public var attributes: ContextAttributes?
    /// The new body (put, create, update) or the patch document (merge_patch, json_patch).
    public var body: ByteBuffer
    /// Empty, or the stream id of this session's finished upload to this context (STREAM_OPEN with
    /// a `context` target), which becomes the body of a put, create or update; `body` is empty then.
    public var bodyStream: String

    public init(
        ref: UInt64, operation: ContextOperation, id: String, expectedVersion: UInt64 = 0, ttlMs: UInt64 = 0,
        attributes: ContextAttributes? = nil, body: ByteBuffer = ByteBuffer(), bodyStream: String = ""
    ) {
        self.ref = ref
        self.operation = operation
        self.id = id
        self.expectedVersion = expectedVersion
        self.ttlMs = ttlMs
        self.attributes = attributes
        self.body = body
        self.bodyStream = bodyStream
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let raw = try r.u8("operation")
        guard let operation = ContextOperation(rawValue: raw) else {
            throw BusError(.badFrame, "unknown context operation \(raw)")
        }
        let id = try r.string("id")
        let expected = try r.u64("expected_version")
        let ttl = try r.u64("ttl_ms")
        let flag = try r.u8("has_attributes")
        guard flag <= 1 else { throw BusError(.badFrame, "has_attributes must be 0 or 1") }
        let attributes = flag == 1 ? try ContextAttributes(reading: &r) : nil
        self.init(
            ref: ref, operation: operation, id: id, expectedVersion: expected, ttlMs: ttl, attributes: attributes,
            body: try r.bytes("body"), bodyStream: try r.string("body_stream"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeInteger(operation.rawValue)
        b.writeWireString(id)
        b.writeMultipleIntegers(expectedVersion, ttlMs, UInt8(attributes == nil ? 0 : 1))
        attributes?.write(to: &b)
        b.writeWireBytes(body)
        b.writeWireString(bodyStream)
    }
}

/// CONTEXT_GET: one context, latest or a kept version. Answered with CONTEXT.
public struct ContextGet: FrameBody {
    public var ref: UInt64
    public var id: String
    /// 0 for the latest.
    public var version: UInt64
    /// Non-zero: if the latest version is not newer than this, CONTEXT comes without a body
    /// (status `not_modified`).
    public var ifNewerThan: UInt64

    public init(ref: UInt64, id: String, version: UInt64 = 0, ifNewerThan: UInt64 = 0) {
        self.ref = ref
        self.id = id
        self.version = version
        self.ifNewerThan = ifNewerThan
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), id: try r.string("id"), version: try r.u64("version"),
            ifNewerThan: try r.u64("if_newer_than"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(id)
        b.writeMultipleIntegers(version, ifNewerThan)
    }
}

/// What a CONTEXT answer holds.
public enum ContextStatus: UInt8, Sendable {
    /// The head and the body.
    case body = 0
    /// The head only: the answer to a write.
    case head = 1
    /// The head only: the context is not newer than the GET's `if_newer_than`.
    case notModified = 2
    /// The head only: the body, over ``Limits/maxInlinePayload``, follows as STREAM_CHUNK frames of
    /// the stream `context/<ref>`, then STREAM_END with the GET's ref.
    case streamed = 3
}

/// CONTEXT: the answer to CONTEXT_GET and CONTEXT_WRITE.
public struct ContextReply: FrameBody {
    public var ref: UInt64
    public var status: ContextStatus
    public var head: ContextHead
    /// Empty unless `status` is ``ContextStatus/body``.
    public var body: ByteBuffer

    /// The stream id a ``ContextStatus/streamed`` body of the GET `ref` comes as.
    public static func streamID(ref: UInt64) -> String { "context/\(ref)" }

    public init(ref: UInt64, status: ContextStatus, head: ContextHead, body: ByteBuffer = ByteBuffer()) {
        self.ref = ref
        self.status = status
        self.head = head
        self.body = body
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let raw = try r.u8("status")
        guard let status = ContextStatus(rawValue: raw) else { throw BusError(.badFrame, "unknown status \(raw)") }
        self.init(ref: ref, status: status, head: try ContextHead(reading: &r), body: try r.bytes("body"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeMultipleIntegers(ref, status.rawValue)
        head.write(to: &b)
        b.writeWireBytes(body)
    }
}

/// CONTEXT_LIST: the contexts of the tenant the caller may read, ordered by id, one page at a
/// time. Empty filters match everything. Answered with CONTEXT_PAGE.
public struct ContextList: FrameBody {
    public var ref: UInt64
    public var kind: String
    public var owner: String
    /// An id pattern: tokens separated by `.`, `*` one token, `>` the rest (as topics).
    public var pattern: String
    public var prefix: String
    /// Every entry must be in the context's metadata.
    public var metadata: [MetadataEntry]
    /// Empty for the first page, then the previous page's `next_cursor`.
    public var cursor: String
    /// Page size, 1...``Limits/maxListCount``; 0 means the maximum.
    public var limit: UInt16

    public init(
        ref: UInt64, kind: String = "", owner: String = "", pattern: String = "", prefix: String = "",
        metadata: [MetadataEntry] = [], cursor: String = "", limit: UInt16 = 0
    ) {
        self.ref = ref
        self.kind = kind
        self.owner = owner
        self.pattern = pattern
        self.prefix = prefix
        self.metadata = metadata
        self.cursor = cursor
        self.limit = limit
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), kind: try r.string("kind"), owner: try r.string("owner"),
            pattern: try r.string("pattern"), prefix: try r.string("prefix"),
            metadata: try r.metadata(),
            cursor: try r.string("cursor"), limit: try r.u16("limit"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(kind)
        b.writeWireString(owner)
        b.writeWireString(pattern)
        b.writeWireString(prefix)
        b.writeWireMetadata(metadata)
        b.writeWireString(cursor)
        b.writeInteger(limit)
    }
}

/// CONTEXT_HISTORY (the kept versions, newest first) and CONTEXT_LINEAGE (ancestors or
/// descendants): a question about one context. Answered with CONTEXT_PAGE.
public struct ContextQuery: FrameBody {
    public var ref: UInt64
    public var id: String
    /// HISTORY: how many versions (0: all kept). LINEAGE: 0 for ancestors, 1 for descendants.
    public var selector: UInt16
    /// LINEAGE: how many links to follow, 1...``Limits/maxLineageDepth`` (0: the maximum). HISTORY: 0.
    public var depth: UInt16

    public init(ref: UInt64, id: String, selector: UInt16 = 0, depth: UInt16 = 0) {
        self.ref = ref
        self.id = id
        self.selector = selector
        self.depth = depth
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"), id: try r.string("id"), selector: try r.u16("selector"), depth: try r.u16("depth"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(id)
        b.writeMultipleIntegers(selector, depth)
    }
}

/// CONTEXT_PAGE: heads (no bodies) answering LIST, HISTORY or LINEAGE.
public struct ContextPage: FrameBody {
    public var ref: UInt64
    public var heads: [ContextHead]
    /// Empty on the last page (and always for HISTORY and LINEAGE).
    public var nextCursor: String

    public init(ref: UInt64, heads: [ContextHead], nextCursor: String = "") {
        self.ref = ref
        self.heads = heads
        self.nextCursor = nextCursor
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(
            ref: try r.u64("ref"),
            heads: try r.list("heads") { (r: inout WireReader) throws(BusError) in try ContextHead(reading: &r) },
            nextCursor: try r.string("next_cursor"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireList(heads) { $1.write(to: &$0) }
        b.writeWireString(nextCursor)
    }
}

/// Where a watch starts.
public enum WatchStart: UInt8, Sendable {
    /// Only changes after the watch is set up.
    case now = 0
    /// Every change after `after`: a version for one context, a tenant revision for a pattern.
    case after = 1
    /// The current version of each matching context (event `snapshot`), then changes.
    case snapshot = 2
}

/// CONTEXT_WATCH: hear of changes to one context or to every context whose id matches a pattern.
/// Its `ref` names the watch in CONTEXT_EVENT and CONTEXT_UNWATCH. Answered with CONTEXT_WATCHING,
/// then events.
public struct ContextWatch: FrameBody {
    public var ref: UInt64
    /// A context id, or a pattern (a token `*` or `>`) to watch every matching id.
    public var target: String
    public var start: WatchStart
    /// The last version (one context) or tenant revision (a pattern) the watcher has seen.
    public var after: UInt64
    /// JSON Pointers (RFC 6901): when set, only changes touching them are sent, as JSON Patches.
    public var paths: [String]

    public init(ref: UInt64, target: String, start: WatchStart = .now, after: UInt64 = 0, paths: [String] = []) {
        self.ref = ref
        self.target = target
        self.start = start
        self.after = after
        self.paths = paths
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let target = try r.string("target")
        let raw = try r.u8("start")
        guard let start = WatchStart(rawValue: raw) else { throw BusError(.badFrame, "unknown watch start \(raw)") }
        self.init(
            ref: ref, target: target, start: start, after: try r.u64("after"),
            paths: try r.list("paths") { (r: inout WireReader) throws(BusError) in try r.string("path") })
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(target)
        b.writeMultipleIntegers(start.rawValue, after)
        b.writeWireList(paths) { $0.writeWireString($1) }
    }
}

/// CONTEXT_WATCHING: the watch `ref` runs. Its first `replayed` events are what its start asked
/// for (a snapshot, or the changes after `after`); every later event is a change after `position`.
public struct ContextWatching: FrameBody {
    public var ref: UInt64
    /// Where the watch stands: the context's version (one id) or the tenant's revision (a pattern)
    /// when it was set up. A client that reconnects resumes after it, or after the last event it saw.
    public var position: UInt64
    /// How many events of the start come first.
    public var replayed: UInt32

    public init(ref: UInt64, position: UInt64, replayed: UInt32) {
        self.ref = ref
        self.position = position
        self.replayed = replayed
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"), position: try r.u64("position"), replayed: try r.u32("replayed"))
    }

    public func write(to b: inout ByteBuffer) { b.writeMultipleIntegers(ref, position, replayed) }
}

/// CONTEXT_UNWATCH: end the watch that CONTEXT_WATCH `watch` started. Answered with OK.
public struct ContextUnwatch: FrameBody {
    public var ref: UInt64
    public var watch: UInt64

    public init(ref: UInt64, watch: UInt64) {
        self.ref = ref
        self.watch = watch
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"), watch: try r.u64("watch"))
    }

    public func write(to b: inout ByteBuffer) { b.writeMultipleIntegers(ref, watch) }
}

/// What happened to a watched context.
public enum ContextEventKind: UInt8, Sendable {
    case created = 0
    case updated = 1
    case deleted = 2
    case expired = 3
    /// The context's current version, sent when a watch starts with ``WatchStart/snapshot``.
    case snapshot = 4

    /// The event's name in JSON and Server-Sent Events.
    public var name: String {
        switch self {
        case .created: "created"
        case .updated: "updated"
        case .deleted: "deleted"
        case .expired: "expired"
        case .snapshot: "snapshot"
        }
    }
}

/// What a CONTEXT_EVENT's `payload` holds.
public enum EventPayload: UInt8, Sendable {
    /// Nothing: a deletion or expiry, or a body over ``Limits/maxEventBody`` (GET it).
    case none = 0
    /// The new body.
    case body = 1
    /// The RFC 6902 JSON Patch from the previous version to this one, restricted to the watch's
    /// paths (field-level watches only).
    case patch = 2
}

/// CONTEXT_EVENT: one change seen by watch `watch`, in order, without gaps.
public struct ContextEvent: FrameBody {
    public var watch: UInt64
    public var kind: ContextEventKind
    public var head: ContextHead
    public var payloadKind: EventPayload
    public var payload: ByteBuffer

    public init(
        watch: UInt64, kind: ContextEventKind, head: ContextHead, payloadKind: EventPayload,
        payload: ByteBuffer = ByteBuffer()
    ) {
        self.watch = watch
        self.kind = kind
        self.head = head
        self.payloadKind = payloadKind
        self.payload = payload
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let watch = try r.u64("watch")
        let raw = try r.u8("event")
        guard let kind = ContextEventKind(rawValue: raw) else { throw BusError(.badFrame, "unknown event \(raw)") }
        let head = try ContextHead(reading: &r)
        let rawPayload = try r.u8("payload_kind")
        guard let payloadKind = EventPayload(rawValue: rawPayload) else {
            throw BusError(.badFrame, "unknown payload kind \(rawPayload)")
        }
        self.init(watch: watch, kind: kind, head: head, payloadKind: payloadKind, payload: try r.bytes("payload"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeMultipleIntegers(watch, kind.rawValue)
        head.write(to: &b)
        b.writeInteger(payloadKind.rawValue)
        b.writeWireBytes(payload)
    }
}
