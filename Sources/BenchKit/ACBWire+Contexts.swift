import Bus
import NIOCore

/// ACB's side of the context scenarios: CONTEXT_WRITE, CONTEXT_GET and CONTEXT_WATCH, and what
/// CONTEXT and CONTEXT_EVENT answer (ERROR arrives as ``WireEvent/refused(_:)`` with its code).
extension ACBWire {
    mutating func context(_ command: ContextCommand, into out: inout ByteBuffer) {
        let frame: Frame
        switch command {
        case .createBucket, .deleteBucket:
            // Contexts live in the tenant: there is no bucket to make or remove.
            return
        case .create(let key, let body, let writers):
            let attributes = ContextAttributes(kind: "bench", contentType: .json, scope: .tenant, writers: writers)
            frame = .contextWrite(
                ContextWrite(ref: takeRef(), operation: .put, id: key.name, attributes: attributes, body: body))
        case .put(let key, let body, .none):
            frame = .contextWrite(ContextWrite(ref: takeRef(), operation: .put, id: key.name, body: body))
        case .put(let key, let body, let expected?):
            frame = .contextWrite(
                ContextWrite(ref: takeRef(), operation: .update, id: key.name, expectedVersion: expected, body: body))
        case .get(let key):
            frame = .contextGet(ContextGet(ref: takeRef(), id: key.name))
        case .watch(let key):
            // The watch's OK arrives as `synced`, like a subscription's.
            frame = .contextWatch(ContextWatch(ref: takeSetupRef(), target: key.name, start: .now))
        }
        frame.encode(into: &out)
    }

    /// CONTEXT: a write's new version (status `head`), or what a read found.
    static func event(_ reply: ContextReply) -> WireEvent {
        switch reply.status {
        case .head: .committed(version: reply.head.version)
        // The harness reads small bodies only: a streamed one (over 1 MiB) never comes.
        case .body, .notModified, .streamed: .value(version: reply.head.version, reply.body)
        }
    }

    /// CONTEXT_EVENT: one change a watch saw.
    static func event(_ change: ContextEvent) -> WireEvent {
        .changed(version: change.head.version, change.payload)
    }
}
