import Actors
import Bus
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The writes of `/api/v1/contexts`: create, put, patch, delete, touch. Each is one CONTEXT_WRITE
/// (docs/protocol.md, section 4.23), answered once the version is committed; the compare-and-swap
/// version comes from `If-Match` (the `ETag` of a read) or `expected_version`.
extension AdminAPI {
    func addContextWriteRoutes(to routes: AdminRoutes) {
        routes.on(.post, "/api/v1/contexts") { request, context in
            let (principal, _) = try await contextWriter(request, allowing: ["tenant"])
            let data = try await request.collectedBody(context: context)
            let input = try Request.decode(ContextInput.self, from: data)
            guard let id = input.id else { throw AdminError(.invalidArgument, "missing field", field: "id") }
            let attributes = try input.attributes(over: Self.newContextAttributes)
            let head = try await writeContext(
                ContextWrite(
                    ref: 0, operation: .create, id: try AdminCheck.identifier(id, field: "id"), ttlMs: try input.ttl(),
                    attributes: attributes, body: try input.bodyBytes(for: attributes.contentType, in: data)),
                by: principal)
            return Self.contextResponse(ContextJSON.object(head), head, status: .created)
        }
        routes.on(.put, "/api/v1/contexts/{context_id}") { request, context in
            let (principal, query) = try await contextWriter(request, allowing: ["tenant", "expected_version"])
            let id = try AdminCheck.parameter("context_id", context)
            let precondition = try ContextPrecondition(request, query)
            let data = try await request.collectedBody(context: context)
            let input = try Request.decode(ContextInput.self, from: data)
            guard input.id == nil else {
                throw AdminError(.invalidArgument, "unknown field id (the id is in the path)", field: "id")
            }
            let (head, created) = try await put(id, input, data, precondition, by: principal)
            return Self.contextResponse(ContextJSON.object(head), head, status: created ? .created : .ok)
        }
        routes.on(.patch, "/api/v1/contexts/{context_id}") { request, context in
            let (principal, query) = try await contextWriter(request, allowing: ["tenant", "expected_version"])
            let id = try AdminCheck.parameter("context_id", context)
            let precondition = try ContextPrecondition(request, query)
            let operation: ContextOperation
            switch Self.mediaType(request) {
            case "application/merge-patch+json": operation = .mergePatch
            case "application/json-patch+json": operation = .jsonPatch
            default:
                throw AdminError(
                    .invalidArgument,
                    "Content-Type is application/merge-patch+json (RFC 7396) or application/json-patch+json (RFC 6902)",
                    field: "Content-Type")
            }
            let data = try await request.collectedBody(context: context)
            let head = try await writeContext(
                ContextWrite(
                    ref: 0, operation: operation, id: id, expectedVersion: precondition.expectedVersion,
                    body: ByteBuffer(bytes: data)),
                by: principal, precondition)
            return Self.contextResponse(ContextJSON.object(head), head)
        }
        routes.on(.delete, "/api/v1/contexts/{context_id}") { request, context in
            let (principal, query) = try await contextWriter(request, allowing: ["tenant", "expected_version"])
            let id = try AdminCheck.parameter("context_id", context)
            let precondition = try ContextPrecondition(request, query)
            _ = try await writeContext(
                ContextWrite(ref: 0, operation: .delete, id: id, expectedVersion: precondition.expectedVersion),
                by: principal, precondition)
            return AdminJSON.noContent
        }
        routes.on(.post, "/api/v1/contexts/{context_id}/touch") { request, context in
            let (principal, _) = try await contextWriter(request, allowing: ["tenant"])
            let id = try AdminCheck.parameter("context_id", context)
            let input = try await request.input(TouchInput.self, context: context)
            guard (1...Limits.maxContextTTLMs).contains(input.ttlMs) else {
                throw AdminError(
                    .invalidArgument, "ttl_ms is from 1 to \(Limits.maxContextTTLMs) (30 days)", field: "ttl_ms")
            }
            let head = try await writeContext(
                ContextWrite(ref: 0, operation: .touch, id: id, ttlMs: input.ttlMs), by: principal)
            return Self.contextResponse(ContextJSON.object(head), head)
        }
    }

    /// A new context's attributes before the body's: a JSON document, private (the wire's default
    /// is bytes; over HTTP, JSON is the common case).
    static let newContextAttributes = ContextAttributes(contentType: .json)

    /// The caller of a write, as a principal, and the request's query (`allowing` those
    /// parameters): the token must have a role that may CONTEXT_WRITE on the wire (admin,
    /// agent-full, agent-producer); a refusal is audited as `security.denied`.
    private func contextWriter(_ request: Request, allowing parameters: Set<String>) async throws(AdminError) -> (
        ContextPrincipal, Query
    ) {
        let caller = try await caller(request)
        guard caller.roles.contains(where: { $0.allows(.contextWrite) }) else {
            throw caller.deny("this token's roles may not write contexts")
        }
        let query = try request.query(allowing: parameters)
        return (try contextPrincipal(caller, query), query)
    }

    /// Applies `write` and returns the committed version's head; a refusal becomes the API's error.
    /// `precondition` is the one `write` was made with: a ``ContextPrecondition/conflicting`` one
    /// is named in the refusal.
    private func writeContext(
        _ write: ContextWrite, by principal: ContextPrincipal, _ precondition: ContextPrecondition = .unchecked
    ) async throws(AdminError) -> ContextHead {
        try refuseWhileShuttingDown()
        do {
            return try await supervisor.writeContext(write, by: principal)
        } catch let error as BusError {
            guard precondition == .conflicting, error.code == .versionConflict else {
                throw AdminError(error, field: Self.writeField(error))
            }
            let conflict = BusError.versionConflict(
                current: error.currentVersion ?? 0, "If-Match (with expected_version, if given) names no version")
            throw AdminError(conflict, field: "If-Match")
        } catch {
            throw AdminError(.internal, "\(error)")
        }
    }

    /// PUT: creates the context when there is no live one (the body's attributes over
    /// ``newContextAttributes``, `ttl_ms` or no expiry), else replaces its body and the attributes
    /// the body names (over its current ones; `ttl_ms` or the current expiry). With a precondition
    /// (`If-Match`, `expected_version`) it is an update of that version only.
    ///
    /// Attributes are sent whole on the wire, so those merged over the version read are written
    /// over that version only; when another write comes in between (or the context appears or goes
    /// away), the put starts again, at most three times: the caller asked for no check.
    /// - Returns: the new head, and whether the put created the context.
    private func put(
        _ id: String, _ input: ContextInput, _ data: Data, _ precondition: ContextPrecondition,
        by principal: ContextPrincipal
    ) async throws(AdminError) -> (ContextHead, created: Bool) {
        var attempt = 1
        while true {
            let current = try liveHead(id, by: principal)
            let write: ContextWrite
            if current == nil, precondition == .unchecked {
                let attributes = try input.attributes(over: Self.newContextAttributes)
                write = ContextWrite(
                    ref: 0, operation: .create, id: id, ttlMs: try input.ttl(), attributes: attributes,
                    body: try input.bodyBytes(for: attributes.contentType, in: data))
            } else {
                let attributes = try input.attributes(over: current?.attributes ?? Self.newContextAttributes)
                let expected = precondition == .unchecked ? current?.version ?? 0 : precondition.expectedVersion
                write = ContextWrite(
                    ref: 0, operation: .update, id: id, expectedVersion: expected, ttlMs: try input.ttl(),
                    attributes: attributes, body: try input.bodyBytes(for: attributes.contentType, in: data))
            }
            do throws(AdminError) {
                return (try await writeContext(write, by: principal, precondition), write.operation == .create)
            } catch
                where precondition == .unchecked && attempt < 3
                && [.versionConflict, .unknownContext, .contextExpired].contains(error.code)
            {
                attempt += 1
            }
        }
    }

    /// The head of the live version of `id`; nil when there is none (never created, deleted,
    /// expired) or the caller may not read it. The write decides then, as on the wire: a create
    /// over a tombstone the caller may not read succeeds, one over a live context is `forbidden`.
    private func liveHead(_ id: String, by principal: ContextPrincipal) throws(AdminError) -> ContextHead? {
        do throws(BusError) {
            // Not newer than the largest version there is: the head alone, the body is not copied.
            return try supervisor.contexts.get(ContextGet(ref: 0, id: id, ifNewerThan: .max), by: principal).head
        } catch {
            guard [.unknownContext, .contextExpired, .forbidden].contains(error.code) else { throw AdminError(error) }
            return nil
        }
    }

    /// The media type of the request's body, without parameters, in lower case.
    private static func mediaType(_ request: Request) -> String? {
        request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// The input at fault in a refused write, as far as the bus's message tells.
    private static func writeField(_ error: BusError) -> String? {
        switch error.code {
        case .invalidJSON, .invalidPointer, .patchFailed, .tooLarge:
            return "body"
        case .invalidArgument:
            let prefixes = [
                ("a group context", "writers"), ("ttl_ms", "ttl_ms"), ("kind", "kind"), ("readers", "readers"),
                ("writers", "writers"), ("label", "label"), ("metadata", "metadata"), ("parents", "parents"),
            ]
            return prefixes.first { error.message.hasPrefix($0.0) }?.1
        default:
            return nil
        }
    }
}
