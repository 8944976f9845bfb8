import Actors
import Bus
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `GET /api/v1/contexts/{context_id}/watch`: a CONTEXT_WATCH (docs/protocol.md, sections 4.27 and
/// 5.14) as Server-Sent Events. `{context_id}` is a context id or, as on the wire, an id pattern
/// (`plan.*`, `plan.>`), so one route serves both; each event's `id` is its position, the version
/// for one context and the tenant's revision for a pattern, which is what `after` and the standard
/// `Last-Event-ID` resume from.
extension AdminAPI {
    func addContextWatchRoute(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/contexts/{context_id}/watch") { request, context in
            let caller = try await caller(request)
            let query = try request.query(allowing: ["tenant", "after", "snapshot"], repeatable: ["path"])
            let principal = try contextPrincipal(caller, query)
            let target = try AdminCheck.parameter("context_id", context)
            let paths = query.list("path")
            guard paths.count <= Limits.maxWatchPaths else {
                throw AdminError(.invalidArgument, "at most \(Limits.maxWatchPaths) paths", field: "path")
            }
            let (start, after, field) = try Self.watchStart(request, query)
            let watcher = ContextStreamWatcher()
            let watch = ContextWatch(
                ref: ContextStreamWatcher.ref, target: target, start: start, after: after, paths: paths)
            // Set up before the answer: a refusal is an error response, and no change made after the
            // client sees the 200 is missed.
            let watching: ContextWatching
            do throws(BusError) {
                watching = try supervisor.contexts.watch(watch, by: principal, watcher: watcher)
            } catch {
                throw AdminError(error, field: Self.watchField(error, position: field))
            }
            let byRevision = Topic.isPattern(target)
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await stream(watcher, watching, byRevision: byRevision, to: &writer)
                })
        }
    }

    /// Writes the watcher's events to `writer` until the stream ends (the watch fell behind, or
    /// the bus shuts down) or the client goes away (a write fails, at the latest at the next
    /// heartbeat); the watch is ended either way.
    ///
    /// Once the events the start replays are written, a line `id: <position>` without data tells
    /// an EventSource where the watch stands (it keeps it as its last event id, dispatching
    /// nothing), so one that reconnects before any change resumes from there and misses nothing.
    private func stream(
        _ watcher: ContextStreamWatcher, _ watching: ContextWatching, byRevision: Bool,
        to writer: inout any ResponseBodyWriter
    ) async throws {
        defer { _ = supervisor.contexts.unwatch(ContextStreamWatcher.ref, watcher: watcher) }
        let started = ByteBuffer(string: "id: \(watching.position)\n\n")
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while (try? await Task.sleep(for: ContextStreamWatcher.heartbeat)) != nil { watcher.heartbeat() }
                }
                // A first line at once: the client knows the watch is set up.
                try await writer.write(ByteBuffer(string: ": watching\n\n"))
                var replaying = Int(watching.replayed)
                if replaying == 0 { try await writer.write(started) }
                while let item = await watcher.next() {
                    if let text = Self.serverSentEvent(item, byRevision: byRevision) { try await writer.write(text) }
                    guard case .event = item, replaying > 0 else { continue }
                    replaying -= 1
                    if replaying == 0 { try await writer.write(started) }
                }
                group.cancelAll()
            }
            try await writer.finish(nil)
        } onGracefulShutdown: {
            watcher.end(.shuttingDown)
        }
    }

    /// Where a watch starts: after `Last-Event-ID` (what a reconnecting EventSource sends, so it
    /// wins over the query it reconnects with), else after `after`, else with a snapshot
    /// (`snapshot=true`), else now. Also the input a refused position concerns.
    private static func watchStart(_ request: Request, _ query: Query) throws(AdminError) -> (
        WatchStart, UInt64, String?
    ) {
        let snapshot: Bool
        switch query.string("snapshot") {
        case nil, "false": snapshot = false
        case "true": snapshot = true
        default: throw AdminError(.invalidArgument, "snapshot is true or false", field: "snapshot")
        }
        if let lastEventID = request.headers[.lastEventID], !lastEventID.isEmpty {
            guard let after = UInt64(lastEventID), after <= Int64.max else {
                throw AdminError(.invalidArgument, "Last-Event-ID is an event's id", field: "Last-Event-ID")
            }
            return (.after, after, "Last-Event-ID")
        }
        if let after = try query.integer("after", in: 0...UInt64(Int64.max)) {
            guard !snapshot else {
                throw AdminError(.invalidArgument, "give after or snapshot=true, not both", field: "snapshot")
            }
            return (.after, after, "after")
        }
        return (snapshot ? .snapshot : .now, 0, nil)
    }

    /// The input a refused watch concerns: `position` (`after` or `Last-Event-ID`) for a position
    /// the bus does not hold, `path` for a bad pointer, else the target.
    private static func watchField(_ error: BusError, position: String?) -> String? {
        switch error.code {
        case .compacted: position
        case .invalidPointer: "path"
        case .invalidArgument: error.message.hasPrefix("after ") ? position : "context_id"
        default: nil
        }
    }

    /// One item as Server-Sent Events text: an event (`id`, `event`, `data`), a comment line, or
    /// the error event that ends a stream; nothing for a client that is gone.
    private static func serverSentEvent(_ item: ContextFeed.Item, byRevision: Bool) -> ByteBuffer? {
        switch item {
        case .event(let event):
            let position = byRevision ? event.head.revision : event.head.version
            var text = ByteBuffer(string: "id: \(position)\nevent: \(event.kind.name)\ndata: ")
            var data = ContextJSON.event(event)
            // A body is kept as it was sent, line breaks between its tokens included; in an event a
            // line break would end the `data` line. Outside strings (where JSON escapes them) they
            // are whitespace, and a space means the same.
            data.withUnsafeMutableReadableBytes { bytes in
                for index in bytes.indices where bytes[index] == 0x0A || bytes[index] == 0x0D { bytes[index] = 0x20 }
            }
            text.writeBuffer(&data)
            text.writeString("\n\n")
            return text
        case .heartbeat:
            return ByteBuffer(string: ": keep-alive\n\n")
        case .end(.lagged(let after)):
            let error = StreamError(code: "overloaded", message: "watch fell behind after \(after)", after: after)
            return ByteBuffer(string: "id: \(after)\nevent: error\ndata: \(error.json)\n\n")
        case .end(.shuttingDown):
            let error = StreamError(code: "shutting_down", message: "the bus is shutting down", after: nil)
            return ByteBuffer(string: "event: error\ndata: \(error.json)\n\n")
        case .end(.gone):
            return nil
        }
    }

    /// The `data` of the `error` event that ends a stream: the error body's `code` and `message`,
    /// and for `overloaded` the position to resume after.
    private struct StreamError: Encodable {
        var code: String
        var message: String
        var after: UInt64?

        var json: String { String(decoding: AdminJSON.data(self), as: UTF8.self) }
    }
}

extension HTTPField.Name {
    /// The last event id an EventSource saw, sent when it reconnects (WHATWG HTML, Server-sent events).
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
}
