public import Bus
import Crypto
public import Foundation
import NIOCore

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
    /// - Throws: `patch_failed` (a missing path, a failed `test`, a context of bytes),
    ///   `invalid_json`, `invalid_pointer`, `version_conflict`.
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
        let reply = try await fetch { ContextGet(ref: $0, id: id, version: version ?? 0) }
        guard reply.status == .body else { throw Self.unexpected(.context(reply)) }
        return SharedContext(head: reply.head, body: reply.body)
    }

    /// The latest version of a context if it is newer than `version`; nil if not (the bus sends no
    /// body then).
    public func get(_ id: String, ifNewerThan version: UInt64) async throws -> SharedContext? {
        let reply = try await fetch { ContextGet(ref: $0, id: id, ifNewerThan: version) }
        switch reply.status {
        case .body: return SharedContext(head: reply.head, body: reply.body)
        case .notModified: return nil
        case .head, .streamed: throw Self.unexpected(.context(reply))
        }
    }

    /// CONTEXT_GET, with a body over the inline limit collected from the stream behind the answer
    /// and checked against the head (its size and SHA-256).
    private func fetch(_ make: (UInt64) -> ContextGet) async throws -> ContextReply {
        let connection = try currentConnection()
        var asked: (ref: UInt64, chunks: AsyncThrowingStream<ByteBuffer, any Error>)?
        let frame: Frame
        do {
            frame = try await connection.call { ref in
                asked = (ref, connection.watchBody(ref: ref))
                return .contextGet(make(ref))
            }
        } catch {
            if let asked { connection.unwatchBody(ref: asked.ref) }
            throw error
        }
        guard case .context(var reply) = frame, let asked else { throw Self.unexpected(frame) }
        guard reply.status == .streamed else {
            connection.unwatchBody(ref: asked.ref)
            return reply
        }
        var body = ByteBuffer()
        for try await var chunk in asked.chunks { body.writeBuffer(&chunk) }
        guard UInt64(body.readableBytes) == reply.head.size,
            body.withUnsafeReadableBytes({ Array(SHA256.hash(data: $0)) }) == reply.head.checksum
        else { throw BusError(.checksumMismatch, "the streamed body of \(reply.head.id) does not match its head") }
        reply.status = .body
        reply.body = body
        return reply
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

    /// A CONTEXT_WRITE. A body over the inline limit (``Limits/maxInlinePayload``) is uploaded as
    /// a stream to the context first, and the write names the upload.
    func write(
        _ operation: ContextOperation, _ id: String, expectedVersion: UInt64? = nil, ttlMs: UInt64 = 0,
        attributes: ContextAttributes? = nil, body: ByteBuffer = ByteBuffer()
    ) async throws -> ContextHead {
        var (body, bodyStream) = (body, "")
        if body.readableBytes > Int(try currentConnection().welcome.limits.maxInlinePayload) {
            bodyStream = UUID().uuidString
            try await upload(to: .context(id), from: BufferSource(body), streamID: bodyStream)
            body = ByteBuffer()
        }
        let frame = try await call { [body, bodyStream] in
            .contextWrite(
                ContextWrite(
                    ref: $0, operation: operation, id: id, expectedVersion: expectedVersion ?? 0, ttlMs: ttlMs,
                    attributes: attributes, body: body, bodyStream: bodyStream))
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
