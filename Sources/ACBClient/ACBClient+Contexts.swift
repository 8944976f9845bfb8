public import Bus
public import Foundation
import NIOConcurrencyHelpers
public import NIOCore

/// Contexts: shared, versioned documents that agents create, read, change and watch.
///
/// Every method answers once the bus has (a write once it is committed) and throws the bus's
/// ``BusError`` when refused: `unknown_context`, `forbidden`, `version_conflict` (read
/// ``BusError/currentVersion``), `invalid_json`, `patch_failed`, `context_expired`, … While the
/// client is reconnecting they fail with `unavailable`, as every command does; a watch instead
/// carries on by itself (see ``watch(_:from:paths:)``).
extension ACBClient {
    // MARK: writing

    /// Puts a context: creates it, or replaces its body and attributes (`options`, all of them) if
    /// it exists. - Returns: the new version's head.
    @discardableResult
    public func share(
        _ id: String, _ body: some ContextBody, options: ContextOptions = ContextOptions()
    ) async throws -> ContextHead {
        try await write(.put, id, ttlMs: options.ttlMs, attributes: options.attributes, body: body.contextBytes)
    }

    /// ``share(_:_:options:)`` with `value` encoded as JSON, and content type JSON.
    /// - Throws: also what `encoder` throws.
    @discardableResult
    public func share(
        _ id: String, json value: some Encodable, options: ContextOptions = ContextOptions(),
        encoder: JSONEncoder = JSONEncoder()
    ) async throws -> ContextHead {
        try await share(id, try Self.json(value, encoder), options: options.json)
    }

    /// Creates a context. - Throws: `version_conflict` if it exists (a deleted or expired one may
    /// be created again).
    @discardableResult
    public func create(
        _ id: String, _ body: some ContextBody, options: ContextOptions = ContextOptions()
    ) async throws -> ContextHead {
        try await write(.create, id, ttlMs: options.ttlMs, attributes: options.attributes, body: body.contextBytes)
    }

    /// ``create(_:_:options:)`` with `value` encoded as JSON, and content type JSON.
    @discardableResult
    public func create(
        _ id: String, json value: some Encodable, options: ContextOptions = ContextOptions(),
        encoder: JSONEncoder = JSONEncoder()
    ) async throws -> ContextHead {
        try await create(id, try Self.json(value, encoder), options: options.json)
    }

    /// Replaces the body of an existing context.
    /// - Parameters:
    ///   - expectedVersion: the version this write replaces; nil for no check.
    ///   - options: new attributes (all of them) and TTL; nil keeps the current ones and the expiry.
    /// - Throws: `version_conflict` (with ``BusError/currentVersion``) when the context is at
    ///   another version, `unknown_context` when it does not exist.
    @discardableResult
    public func update(
        _ id: String, _ body: some ContextBody, expectedVersion: UInt64? = nil, options: ContextOptions? = nil
    ) async throws -> ContextHead {
        try await write(
            .update, id, expectedVersion: expectedVersion, ttlMs: options?.ttlMs ?? 0,
            attributes: options?.attributes, body: body.contextBytes)
    }

    /// ``update(_:_:expectedVersion:options:)`` with `value` encoded as JSON. With `options` nil the
    /// content type stays what it was.
    @discardableResult
    public func update(
        _ id: String, json value: some Encodable, expectedVersion: UInt64? = nil, options: ContextOptions? = nil,
        encoder: JSONEncoder = JSONEncoder()
    ) async throws -> ContextHead {
        try await update(id, try Self.json(value, encoder), expectedVersion: expectedVersion, options: options?.json)
    }

    /// Applies a patch to a JSON context, all of it or nothing.
    /// - Throws: `patch_failed` (a missing path, a failed `test`), `invalid_json`, `invalid_pointer`,
    ///   `invalid_argument` for a context of bytes, `version_conflict`.
    @discardableResult
    public func patch(_ id: String, _ patch: ContextPatch, expectedVersion: UInt64? = nil) async throws -> ContextHead {
        try await write(patch.operation, id, expectedVersion: expectedVersion, body: patch.document)
    }

    /// Deletes a context. - Returns: the tombstone's head (the id may be created again, with the
    /// next version).
    @discardableResult
    public func delete(_ id: String, expectedVersion: UInt64? = nil) async throws -> ContextHead {
        try await write(.delete, id, expectedVersion: expectedVersion)
    }

    /// Sets a context to expire `ttl` from now, without changing its body (a new version).
    @discardableResult
    public func touch(_ id: String, ttl: Duration) async throws -> ContextHead {
        try await touch(id, ttlMs: ContextOptions.milliseconds(ttl))
    }

    /// Sets a context to expire `ttlMs` milliseconds from now (at least 1), without changing its body.
    @discardableResult
    public func touch(_ id: String, ttlMs: UInt64) async throws -> ContextHead {
        try await write(.touch, id, ttlMs: ttlMs)
    }

    // MARK: reading

    /// The latest version of a context, or version `version` if the bus still keeps it.
    /// - Throws: `unknown_context` (also once deleted), `context_expired`, `compacted` for a
    ///   version no longer kept, `forbidden`.
    public func get(_ id: String, version: UInt64? = nil) async throws -> SharedContext {
        let frame = try await call { .contextGet(ContextGet(ref: $0, id: id, version: version ?? 0)) }
        guard case .context(let reply) = frame, reply.status == .body else { throw Self.unexpected(frame) }
        return SharedContext(head: reply.head, body: reply.body)
    }

    /// The latest version of a context if it is newer than `version`; nil if not (the bus sends no
    /// body then).
    public func get(_ id: String, ifNewerThan version: UInt64) async throws -> SharedContext? {
        let frame = try await call { .contextGet(ContextGet(ref: $0, id: id, ifNewerThan: version)) }
        guard case .context(let reply) = frame else { throw Self.unexpected(frame) }
        switch reply.status {
        case .body: return SharedContext(head: reply.head, body: reply.body)
        case .notModified: return nil
        case .head: throw Self.unexpected(frame)
        }
    }

    /// The heads of the live contexts of the tenant that this agent may read, ordered by id. Empty
    /// filters match everything; `metadata` entries must all be in a context's metadata.
    ///
    /// Every page is fetched before this returns (one round trip per `pageSize` heads; 0 asks for
    /// the bus's maximum, ``Limits/maxListCount``), so the result holds the whole listing.
    public func list(
        kind: String = "", owner: String = "", pattern: String = "", prefix: String = "",
        metadata: [String: String] = [:], pageSize: UInt16 = 0
    ) async throws -> [ContextHead] {
        let entries = ContextOptions.entries(metadata)
        var heads: [ContextHead] = []
        var cursor = ""
        repeat {
            let after = cursor
            let page = try await query {
                .contextList(
                    ContextList(
                        ref: $0, kind: kind, owner: owner, pattern: pattern, prefix: prefix, metadata: entries,
                        cursor: after, limit: pageSize))
            }
            heads += page.heads
            cursor = page.heads.isEmpty ? "" : page.nextCursor
        } while !cursor.isEmpty
        return heads
    }

    /// The heads of the versions the bus keeps of a context, newest first; at most `limit` (0: all).
    public func history(_ id: String, limit: UInt16 = 0) async throws -> [ContextHead] {
        try await query { .contextHistory(ContextQuery(ref: $0, id: id, selector: limit)) }.heads
    }

    /// The contexts a context was derived from (`ancestors`, following its parents) or that were
    /// derived from it (`descendants`), nearest first, up to `depth` links (0: the bus's maximum,
    /// ``Limits/maxLineageDepth``). Those this agent may not read are left out.
    public func lineage(
        _ id: String, _ direction: LineageDirection = .ancestors, depth: UInt16 = 0
    ) async throws -> [ContextHead] {
        let selector = direction.rawValue
        let page = try await query {
            .contextLineage(ContextQuery(ref: $0, id: id, selector: selector, depth: depth))
        }
        return page.heads
    }

    // MARK: watching

    /// Watches one context, or every context whose id matches a pattern (a token `*` or `>`):
    /// returns once the bus has set the watch up, with the sequence of its events.
    ///
    /// Events come in order and without gaps: for one id, ``ContextWatchEvent/version`` increases;
    /// for a pattern, ``ContextWatchEvent/revision`` does. After a reconnect the watch is set up
    /// again by itself, after the last position it received or the one the bus named when the
    /// watch started (CONTEXT_WATCHING), so nothing is missed or repeated; a snapshot cut before
    /// it was all received is taken again. If the bus ends the watch with `overloaded` (it fell
    /// behind), it resumes the same way once the consumer has taken what it holds.
    ///
    /// The sequence throws, and the watch ends, when the bus refuses to resume it (`compacted`:
    /// the position is no longer kept, see ``BusError/oldestHeld``; `invalid_argument`: a bus
    /// that restarted without storage) or ends it for another reason, and when the consumer falls
    /// more than 1,024 events behind (`overloaded`, after those already received: the client holds
    /// no more for one watch). It ends without error after ``ContextWatchEvents/cancel()`` and
    /// ``close()``. The watch is cancelled when the sequence and its iterators are released.
    ///
    /// - Parameters:
    ///   - paths: JSON Pointers: only changes touching them are sent, as JSON Patches.
    /// - Throws: `forbidden`, `invalid_argument`, `invalid_pointer`, `compacted`, `unavailable`.
    public func watch(
        _ target: String, from start: ContextWatchStart = .now, paths: [String] = []
    ) async throws -> ContextWatchEvents {
        let connection = try currentConnection()
        let added = contextWatches.add(target, start: start, paths: paths, on: connection) { [weak self] id in
            self?.watchCancelled(id)
        }
        guard let added else { throw ClientConnection.closedError }
        do {
            let frame = try await connection.call { ref in
                contextWatches.sent(added.id, on: connection, ref: ref)
                return added.claim.request.frame(ref)
            }
            guard case .contextWatching(let watching) = frame else { throw Self.unexpected(frame) }
            // If the watch is already gone (an ERROR just after the answer), its sequence says why.
            _ = contextWatches.answered(added.id, on: connection, ref: watching.ref)
        } catch {
            if let running = contextWatches.cancel(added.id) { await unwatch(running) }
            throw error
        }
        return ContextWatchEvents(handle: WatchHandle(client: self, id: added.id), base: added.stream)
    }

    // MARK: internals

    private func write(
        _ operation: ContextOperation, _ id: String, expectedVersion: UInt64? = nil, ttlMs: UInt64 = 0,
        attributes: ContextAttributes? = nil, body: ByteBuffer = ByteBuffer()
    ) async throws -> ContextHead {
        let frame = try await call {
            .contextWrite(
                ContextWrite(
                    ref: $0, operation: operation, id: id, expectedVersion: expectedVersion ?? 0, ttlMs: ttlMs,
                    attributes: attributes, body: body))
        }
        guard case .context(let reply) = frame else { throw Self.unexpected(frame) }
        return reply.head
    }

    /// LIST, HISTORY or LINEAGE, answered with CONTEXT_PAGE.
    private func query(_ build: (UInt64) -> Frame) async throws -> ContextPage {
        let frame = try await call(build)
        guard case .contextPage(let page) = frame else { throw Self.unexpected(frame) }
        return page
    }

    static func json(_ value: some Encodable, _ encoder: JSONEncoder) throws -> ByteBuffer {
        ByteBuffer(bytes: try encoder.encode(value))
    }

    /// Sends CONTEXT_WATCH for watch `id` as `claim` says, and again on the next connection if this
    /// one goes before the bus answers. Ends the watch if the bus refuses.
    func keepWatching(_ id: Int, _ claim: ContextWatchHub.Claim) async {
        var next: ContextWatchHub.Claim? = claim
        while let claim = next {
            let connection = claim.connection
            do {
                let frame = try await connection.call { ref in
                    contextWatches.sent(id, on: connection, ref: ref)
                    return claim.request.frame(ref)
                }
                guard case .contextWatching(let watching) = frame else { throw Self.unexpected(frame) }
                if !contextWatches.answered(id, on: connection, ref: watching.ref) {
                    await unwatch(ContextWatchHub.Subscription(connection: connection, ref: watching.ref))
                }
                return
            } catch {
                let error = error as? BusError ?? BusError(.internal, "\(error)")
                next = contextWatches.failed(id, on: connection, error) { [self] in try? currentConnection() }
            }
        }
    }

    /// Sets up again, on the connection just established, every watch waiting for one.
    func restoreContextWatches(on connection: ClientConnection) async {
        let claims = contextWatches.restore(on: connection)
        await withTaskGroup(of: Void.self) { group in
            for (id, claim) in claims {
                group.addTask { await self.keepWatching(id, claim) }
            }
        }
    }

    /// A connection closed: its watches wait for the next one, or end if there will be none.
    func contextWatchesLost(_ connection: ClientConnection, goAway: GoAway?) {
        let reconnects = configuration.reconnect && goAway?.code != .replaced
        let ending = goAway.map { BusError($0.code, $0.message) } ?? ClientConnection.closedError
        contextWatches.connectionLost(connection, ending: reconnects ? nil : ending)
    }

    /// The consumer reached the point where the bus ended the watch with `overloaded`: set it up
    /// again, after what the consumer has now had.
    func resumeWatch(_ id: Int) async {
        guard let claim = contextWatches.resume(id, current: { [self] in try? currentConnection() }) else { return }
        await keepWatching(id, claim)
    }

    /// The consumer's task was cancelled, or the sequence released.
    func watchCancelled(_ id: Int) {
        if let running = contextWatches.cancel(id) { unwatchLater(running) }
    }

    func unwatch(_ subscription: ContextWatchHub.Subscription) async {
        let watch = subscription.ref
        _ = try? await subscription.connection.call { .contextUnwatch(ContextUnwatch(ref: $0, watch: watch)) }
    }

    /// CONTEXT_UNWATCH from where nothing can wait for the answer (the event loop, a deinit).
    /// Unstructured on purpose: the answer changes nothing, the watch is already gone here.
    func unwatchLater(_ subscription: ContextWatchHub.Subscription) {
        Task { await self.unwatch(subscription) }
    }

    // ClientConnectionDelegate, for watches.

    func contextEvent(_ event: ContextEvent, on connection: ClientConnection) {
        if let unwanted = contextWatches.received(event, on: connection) { unwatchLater(unwanted) }
    }

    func watchStarted(_ watching: ContextWatching, on connection: ClientConnection) {
        contextWatches.started(watching, on: connection)
    }

    func watchEnded(_ ref: UInt64, _ error: BusError, on connection: ClientConnection) {
        contextWatches.ended(ref, error, on: connection)
    }
}

/// Which way ``ACBClient/lineage(_:_:depth:)`` follows parent links.
public enum LineageDirection: UInt16, Sendable {
    /// The contexts this one was derived from, and theirs.
    case ancestors = 0
    /// The contexts derived from this one, and from those.
    case descendants = 1
}

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

/// Bytes that can be a context's body, as they are: `[UInt8]`, `ByteBuffer`, and `String` (UTF-8).
/// For a value encoded as JSON, use the `json:` variants of the writes.
public protocol ContextBody: Sendable {
    /// The body's bytes.
    var contextBytes: ByteBuffer { get }
}

extension ByteBuffer: ContextBody {
    public var contextBytes: ByteBuffer { self }
}

extension String: ContextBody {
    public var contextBytes: ByteBuffer { ByteBuffer(string: self) }
}

extension Array: ContextBody where Element == UInt8 {
    public var contextBytes: ByteBuffer { ByteBuffer(bytes: self) }
}

/// A change to a JSON context, applied by the bus all or nothing.
public enum ContextPatch: Sendable {
    /// An RFC 7396 JSON Merge Patch: an object whose members replace those of the context, and
    /// whose `null` members remove them.
    case merge(ByteBuffer)
    /// An RFC 6902 JSON Patch: an array of operations (`add`, `remove`, `replace`, `move`, `copy`,
    /// `test`).
    case json(ByteBuffer)

    /// A merge patch from its JSON text.
    public static func merge(text: String) -> ContextPatch { .merge(ByteBuffer(string: text)) }

    /// A JSON Patch from its JSON text.
    public static func json(text: String) -> ContextPatch { .json(ByteBuffer(string: text)) }

    /// A merge patch that sets the members `value` encodes to. (A nil optional is left out by
    /// `JSONEncoder`, not sent as `null`: this cannot remove members.)
    public static func merge(encoding value: some Encodable, encoder: JSONEncoder = JSONEncoder()) throws
        -> ContextPatch
    {
        .merge(try ACBClient.json(value, encoder))
    }

    var operation: ContextOperation {
        switch self {
        case .merge: .mergePatch
        case .json: .jsonPatch
        }
    }

    var document: ByteBuffer {
        switch self {
        case .merge(let document), .json(let document): document
        }
    }
}

/// One version of a context: its head and its body.
public struct SharedContext: Sendable {
    public var head: ContextHead
    public var body: ByteBuffer

    public init(head: ContextHead, body: ByteBuffer) {
        self.head = head
        self.body = body
    }

    public var id: String { head.id }
    public var version: UInt64 { head.version }
    /// The body's bytes.
    public var bytes: [UInt8] { Array(body.readableBytesView) }
    /// The body as UTF-8 text.
    public var text: String { String(buffer: body) }

    /// The body, read as JSON into a `Value`. - Throws: what `decoder` throws.
    public func decode<Value: Decodable>(
        _ type: Value.Type = Value.self, decoder: JSONDecoder = JSONDecoder()
    ) throws -> Value {
        try decoder.decode(type, from: Data(body.readableBytesView))
    }
}

/// One change a watch saw: what happened, the context's new head, and the body or patch if the
/// bus sent one.
public struct ContextWatchEvent: Sendable {
    public var kind: ContextEventKind
    public var head: ContextHead
    /// What ``payload`` holds: the new body, a JSON Patch (watches with paths), or nothing (a
    /// deletion or expiry, or a body over ``Limits/maxEventBody``: GET it).
    public var payloadKind: EventPayload
    public var payload: ByteBuffer

    init(_ event: ContextEvent) {
        self.kind = event.kind
        self.head = event.head
        self.payloadKind = event.payloadKind
        self.payload = event.payload
    }

    public var id: String { head.id }
    /// The position of a watch on one id.
    public var version: UInt64 { head.version }
    /// The position of a watch on a pattern.
    public var revision: UInt64 { head.revision }
    /// The new body, if the event carries it.
    public var body: ByteBuffer? { payloadKind == .body ? payload : nil }
    /// The RFC 6902 JSON Patch from the previous version, if the event carries one.
    public var patch: ByteBuffer? { payloadKind == .patch ? payload : nil }

    /// The body the event carries, read as JSON into a `Value`.
    /// - Throws: ``ErrorCode/invalidArgument`` if the event carries no body; what `decoder` throws.
    public func decode<Value: Decodable>(
        _ type: Value.Type = Value.self, decoder: JSONDecoder = JSONDecoder()
    ) throws -> Value {
        guard let body else { throw BusError(.invalidArgument, "the \(kind.name) event of \(id) carries no body") }
        return try decoder.decode(type, from: Data(body.readableBytesView))
    }
}

/// The events of one watch (see ``ACBClient/watch(_:from:paths:)``), for one consumer: iterate it
/// from a single task.
public struct ContextWatchEvents: AsyncSequence, Sendable {
    public typealias Element = ContextWatchEvent

    let handle: WatchHandle
    let base: AsyncThrowingStream<ContextWatchHub.Item, any Error>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let handle: WatchHandle
        var base: AsyncThrowingStream<ContextWatchHub.Item, any Error>.AsyncIterator

        public mutating func next() async throws -> ContextWatchEvent? {
            while let item = try await base.next() {
                switch item {
                case .event(let event): return event
                case .resume: await handle.client.resumeWatch(handle.id)
                }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(handle: handle, base: base.makeAsyncIterator())
    }

    /// Ends the watch: the bus stops it, and iteration ends after the events already received.
    public func cancel() async {
        guard let running = handle.client.contextWatches.cancel(handle.id) else { return }
        await handle.client.unwatch(running)
    }
}

/// Cancels its watch when the last sequence or iterator holding it goes.
final class WatchHandle: Sendable {
    let client: ACBClient
    let id: Int

    init(client: ACBClient, id: Int) {
        self.client = client
        self.id = id
    }

    deinit { client.watchCancelled(id) }
}

/// Every context watch of one client, across its connections: a value per watch, under one lock.
///
/// It routes CONTEXT_EVENT and the ERROR that ends a watch by (connection, ref), buffers events
/// for the consumer, remembers the last position each watch received, and hands out *claims*: a
/// watch to set up on a connection with CONTEXT_WATCH, which the client then sends. A watch is
/// claimed by one sender at a time; one whose connection went waits (`idle`) until the client
/// claims it on its next connection (``restore(on:)``), or until a sender whose connection failed
/// finds the client's current one.
///
/// Yields happen under the lock (they never call back); `finish` outside it, since it runs the
/// stream's termination handler, which may come back here. Lock order: this lock, then the
/// client's and a connection's (through `current`); nothing calls in here holding those.
final class ContextWatchHub: Sendable {
    /// Events that may wait for a watch's consumer: one more ends the watch with `overloaded`,
    /// rather than letting the buffer grow.
    static let bufferLimit = 1_024

    /// What a watch's stream carries: events, and where the bus ended the watch for falling
    /// behind (the consumer sets it up again on reaching it).
    enum Item: Sendable {
        case event(ContextWatchEvent)
        case resume
    }

    /// What CONTEXT_WATCH asks for: the watch as it was asked, or from its last position.
    struct Request: Sendable {
        var target: String
        var start: WatchStart
        var after: UInt64
        var paths: [String]

        func frame(_ ref: UInt64) -> Frame {
            .contextWatch(ContextWatch(ref: ref, target: target, start: start, after: after, paths: paths))
        }
    }

    /// A watch to set up on `connection` with `request`.
    struct Claim: Sendable {
        var connection: ClientConnection
        var request: Request
    }

    /// A watch the bus runs: CONTEXT_WATCH `ref` on `connection`.
    struct Subscription: Sendable {
        var connection: ClientConnection
        var ref: UInt64
    }

    private struct Route: Hashable {
        var connection: ObjectIdentifier
        var ref: UInt64

        init(_ connection: ClientConnection, _ ref: UInt64) {
            self.connection = ObjectIdentifier(connection)
            self.ref = ref
        }
    }

    private enum Phase {
        /// A sender is about to send CONTEXT_WATCH on this connection.
        case claimed(ClientConnection)
        /// CONTEXT_WATCH `ref` went out; no answer handled yet (events may already come).
        case subscribing(ClientConnection, UInt64)
        case live(ClientConnection, UInt64)
        /// Waiting for a connection.
        case idle
        /// Ended by the bus with `overloaded`; the consumer sets it up again.
        case paused

        var connection: ClientConnection? {
            switch self {
            case .claimed(let connection), .subscribing(let connection, _), .live(let connection, _): connection
            case .idle, .paused: nil
            }
        }

        var route: Route? {
            switch self {
            case .subscribing(let connection, let ref), .live(let connection, let ref): Route(connection, ref)
            case .claimed, .idle, .paused: nil
            }
        }
    }

    private struct Watch {
        let target: String
        let paths: [String]
        let start: ContextWatchStart
        /// Positions are revisions (a pattern) or versions (one id).
        let isPattern: Bool
        let continuation: AsyncThrowingStream<Item, any Error>.Continuation
        /// Where to resume: the last position handed to the stream, or where the bus said the
        /// watch stood once its first events (``replayLeft``) were handed over.
        var position: UInt64?
        /// Events of the start (a snapshot, a replay) still to come, and the position the bus named
        /// for after them. A watch cut before they all came starts as it was asked again.
        var replayLeft: UInt32 = 0
        var startedAt: UInt64 = 0
        var phase: Phase

        var request: Request {
            if let position { return Request(target: target, start: .after, after: position, paths: paths) }
            switch start {
            case .now: return Request(target: target, start: .now, after: 0, paths: paths)
            case .snapshot: return Request(target: target, start: .snapshot, after: 0, paths: paths)
            case .after(let after): return Request(target: target, start: .after, after: after, paths: paths)
            }
        }
    }

    private struct State {
        var nextID = 0
        var watches: [Int: Watch] = [:]
        var routes: [Route: Int] = [:]
        var closed = false

        mutating func remove(_ id: Int) -> Watch? {
            guard let watch = watches.removeValue(forKey: id) else { return nil }
            if let route = watch.phase.route { routes[route] = nil }
            return watch
        }

        /// Takes watch `id` off its connection: onto `current` if that one is up (the caller sends
        /// CONTEXT_WATCH there), else idle.
        mutating func release(_ id: Int, to current: ClientConnection?) -> Claim? {
            guard var watch = watches[id] else { return nil }
            if let route = watch.phase.route { routes[route] = nil }
            defer { watches[id] = watch }
            guard let current, current.isActive, current !== watch.phase.connection else {
                watch.phase = .idle
                return nil
            }
            watch.phase = .claimed(current)
            return Claim(connection: current, request: watch.request)
        }
    }

    private let state = NIOLockedValueBox(State())

    /// A new watch, claimed on `connection`; nil once the client is closed.
    func add(
        _ target: String, start: ContextWatchStart, paths: [String], on connection: ClientConnection,
        whenCancelled: @escaping @Sendable (Int) -> Void
    ) -> (id: Int, claim: Claim, stream: AsyncThrowingStream<Item, any Error>)? {
        // One slot more than the limit: room for the `resume` marker, and the overflow is seen.
        let (stream, continuation) = AsyncThrowingStream<Item, any Error>.makeStream(
            bufferingPolicy: .bufferingOldest(Self.bufferLimit + 1))
        let watch = Watch(
            target: target, paths: paths, start: start, isPattern: Topic.isPattern(target),
            continuation: continuation, phase: .claimed(connection))
        let id: Int? = state.withLockedValue { state in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.watches[state.nextID] = watch
            return state.nextID
        }
        guard let id else { return nil }
        continuation.onTermination = { termination in
            if case .cancelled = termination { whenCancelled(id) }
        }
        return (id, Claim(connection: connection, request: watch.request), stream)
    }

    /// CONTEXT_WATCH `ref` is going out on `connection` for watch `id`: its events go to it.
    func sent(_ id: Int, on connection: ClientConnection, ref: UInt64) {
        state.withLockedValue { state in
            guard case .claimed(let claimed)? = state.watches[id]?.phase, claimed === connection else { return }
            state.watches[id]?.phase = .subscribing(connection, ref)
            state.routes[Route(connection, ref)] = id
        }
    }

    /// CONTEXT_WATCHING, on the event loop before the events behind it: where the watch stands,
    /// once its first `replayed` events are in.
    func started(_ watching: ContextWatching, on connection: ClientConnection) {
        state.withLockedValue { state in
            guard let id = state.routes[Route(connection, watching.ref)], var watch = state.watches[id] else { return }
            watch.replayLeft = watching.replayed
            watch.startedAt = watching.position
            if watching.replayed == 0 { watch.position = max(watch.position ?? 0, watching.position) }
            state.watches[id] = watch
        }
    }

    /// The bus answered CONTEXT_WATCHING. - Returns: false if the watch is gone (the caller sends
    /// CONTEXT_UNWATCH).
    func answered(_ id: Int, on connection: ClientConnection, ref: UInt64) -> Bool {
        state.withLockedValue { state in
            guard let watch = state.watches[id] else { return false }
            // Anything else: the connection went meanwhile, or the bus already ended the watch.
            if case .subscribing(let sentOn, ref) = watch.phase, sentOn === connection {
                state.watches[id]?.phase = .live(connection, ref)
            }
            return true
        }
    }

    /// CONTEXT_WATCH failed on `connection`. If the connection went, the watch moves to the
    /// current one (returned: send it there) or waits; else the bus refused, and the watch ends
    /// with `error`.
    func failed(
        _ id: Int, on connection: ClientConnection, _ error: BusError, current: () -> ClientConnection?
    ) -> Claim? {
        let (claim, ended): (Claim?, Watch?) = state.withLockedValue { state in
            guard let watch = state.watches[id], watch.phase.connection === connection else { return (nil, nil) }
            guard connection.isActive else { return (state.release(id, to: current()), nil) }
            return (nil, state.remove(id))
        }
        ended?.continuation.finish(throwing: error)
        return claim
    }

    /// A CONTEXT_EVENT. - Returns: a watch the bus should stop (its consumer is gone, or fell too
    /// far behind and the watch ended).
    func received(_ event: ContextEvent, on connection: ClientConnection) -> Subscription? {
        let (overflowed, unwanted): (Watch?, Subscription?) = state.withLockedValue { state in
            guard let id = state.routes[Route(connection, event.watch)], var watch = state.watches[id] else {
                return (nil, nil)
            }
            let position = watch.isPattern ? event.head.revision : event.head.version
            // The bus sends nothing twice; this keeps the promise should it ever.
            if event.kind != .snapshot, let last = watch.position, position <= last { return (nil, nil) }
            // A snapshot's positions are in id order, not increasing: they say nothing of where to resume.
            if event.kind != .snapshot { watch.position = max(watch.position ?? 0, position) }
            if watch.replayLeft > 0 {
                watch.replayLeft -= 1
                if watch.replayLeft == 0 { watch.position = max(watch.position ?? 0, watch.startedAt) }
            }
            state.watches[id] = watch
            let running = Subscription(connection: connection, ref: event.watch)
            switch watch.continuation.yield(.event(ContextWatchEvent(event))) {
            case .enqueued(let remaining) where remaining > 0:
                return (nil, nil)
            case .enqueued, .dropped:
                return (state.remove(id), running)
            case .terminated:
                _ = state.remove(id)
                return (nil, running)
            @unknown default:
                return (nil, nil)
            }
        }
        overflowed?.continuation.finish(
            throwing: BusError(.overloaded, "the consumer fell more than \(Self.bufferLimit) events behind"))
        return unwanted
    }

    /// An ERROR with a watch's ref: the bus ended it. `overloaded` pauses it (the consumer sets it
    /// up again once it has taken what it holds).
    func ended(_ ref: UInt64, _ error: BusError, on connection: ClientConnection) {
        let ended: Watch? = state.withLockedValue { state in
            guard let id = state.routes.removeValue(forKey: Route(connection, ref)), var watch = state.watches[id]
            else { return nil }
            // Each resume takes at least one event, and only once the consumer took what it holds:
            // it always makes progress, at the consumer's pace.
            if error.code == .overloaded {
                watch.phase = .paused
                state.watches[id] = watch
                if case .enqueued = watch.continuation.yield(.resume) { return nil }
            }
            return state.remove(id)
        }
        ended?.continuation.finish(throwing: error)
    }

    /// The consumer reached the `resume` marker. - Returns: the claim to send, if a connection is up.
    func resume(_ id: Int, current: () -> ClientConnection?) -> Claim? {
        state.withLockedValue { state in
            guard case .paused? = state.watches[id]?.phase else { return nil }
            return state.release(id, to: current())
        }
    }

    /// `connection` closed: its watches wait for the next one, or all end with `error` when there
    /// will be none.
    func connectionLost(_ connection: ClientConnection, ending error: BusError?) {
        let ended: [Watch] = state.withLockedValue { state in
            guard error == nil else {
                defer {
                    state.watches.removeAll()
                    state.routes.removeAll()
                }
                return Array(state.watches.values)
            }
            for (id, watch) in state.watches where watch.phase.connection === connection {
                _ = state.release(id, to: nil)
            }
            return []
        }
        for watch in ended { watch.continuation.finish(throwing: error) }
    }

    /// Claims every waiting watch on `connection`, just established.
    func restore(on connection: ClientConnection) -> [(id: Int, claim: Claim)] {
        state.withLockedValue { state in
            var claims: [(id: Int, claim: Claim)] = []
            for (id, watch) in state.watches {
                guard case .idle = watch.phase else { continue }
                state.watches[id]?.phase = .claimed(connection)
                claims.append((id, Claim(connection: connection, request: watch.request)))
            }
            return claims
        }
    }

    /// Removes watch `id`; its sequence ends after what it holds.
    /// - Returns: where the bus runs it, to stop it there (a watch still being set up is stopped
    ///   by its sender, when the OK comes).
    func cancel(_ id: Int) -> Subscription? {
        guard let watch = state.withLockedValue({ $0.remove(id) }) else { return nil }
        watch.continuation.finish()
        guard case .live(let connection, let ref) = watch.phase else { return nil }
        return Subscription(connection: connection, ref: ref)
    }

    /// The client closed: every sequence ends after what it holds, and no watch starts again.
    func close() {
        let all: [Watch] = state.withLockedValue { state in
            state.closed = true
            defer {
                state.watches.removeAll()
                state.routes.removeAll()
            }
            return Array(state.watches.values)
        }
        for watch in all { watch.continuation.finish() }
    }
}
