import Actors
import Bus
import HTTPTypes
import Hummingbird
import NIOCore

/// `/api/v1/contexts`: shared, versioned documents (docs/protocol.md, section 5.13) over HTTP.
/// Reads are here (list, one context, its history and lineage), writes in
/// `ContextRoutes+Write.swift`, watches as Server-Sent Events in `ContextRoutes+Watch.swift`.
///
/// Every operation goes to the same ``ContextService`` as the wire, as the caller's agent (a
/// ``ContextPrincipal``): versions, scopes, compare-and-swap and the audit of scope refusals
/// (`context.denied`) are the bus's, and a context written here is the one agents read.
extension AdminAPI {
    func addContextRoutes(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/contexts") { request, _ in
            let caller = try await caller(request)
            let query = try request.query(
                allowing: ["tenant", "kind", "owner", "pattern", "prefix", "cursor", "limit"], repeatable: ["metadata"])
            let principal = try contextPrincipal(caller, query)
            let pattern = try query.identifier("pattern") ?? ""
            let prefix = query.string("prefix") ?? ""
            try AdminCheck.text(prefix, field: "prefix", maxCharacters: Limits.maxIdentifierBytes)
            let list = ContextList(
                ref: 0, kind: try query.identifier("kind") ?? "", owner: try query.identifier("owner") ?? "",
                pattern: pattern, prefix: prefix, metadata: try Self.metadataFilters(query.list("metadata")),
                cursor: query.string("cursor") ?? "", limit: UInt16(try query.limit()))
            let page = try contextCall([.invalidArgument: "pattern"]) { () throws(BusError) in
                try supervisor.contexts.list(list, by: principal)
            }
            return AdminJSON.response(
                ContextJSON.ListPage(
                    contexts: page.heads.map(ContextJSON.Head.init),
                    nextCursor: page.nextCursor.isEmpty ? nil : page.nextCursor))
        }
        routes.on(.get, "/api/v1/contexts/{context_id}") { request, context in
            let caller = try await caller(request)
            let query = try request.query(allowing: ["tenant", "version", "if_newer_than"])
            let principal = try contextPrincipal(caller, query)
            let id = try AdminCheck.parameter("context_id", context)
            // As on the wire, if_newer_than concerns the latest version only (ignored with version).
            let get = ContextGet(
                ref: 0, id: id, version: try query.integer("version", in: Self.versions) ?? 0,
                ifNewerThan: try query.integer("if_newer_than", in: Self.versions) ?? 0)
            let reply = try contextCall([.compacted: "version"]) { () throws(BusError) in
                try supervisor.contexts.get(get, by: principal)
            }
            guard reply.status != .notModified else {
                return Response(status: .notModified, headers: [.eTag: ContextJSON.eTag(reply.head)])
            }
            return Self.contextResponse(ContextJSON.withBody(reply.head, reply.body), reply.head)
        }
        routes.on(.get, "/api/v1/contexts/{context_id}/history") { request, context in
            let caller = try await caller(request)
            let query = try request.query(allowing: ["tenant", "limit"])
            let principal = try contextPrincipal(caller, query)
            let id = try AdminCheck.parameter("context_id", context)
            // All the kept versions (16 by default) unless fewer are asked for.
            let limit = try query.limit(standard: 0)
            let page = try contextCall { () throws(BusError) in
                try supervisor.contexts.history(ContextQuery(ref: 0, id: id, selector: UInt16(limit)), by: principal)
            }
            return AdminJSON.response(ContextJSON.History(versions: page.heads.map(ContextJSON.Head.init)))
        }
        routes.on(.get, "/api/v1/contexts/{context_id}/lineage") { request, context in
            let caller = try await caller(request)
            let query = try request.query(allowing: ["tenant", "direction", "depth"])
            let principal = try contextPrincipal(caller, query)
            let id = try AdminCheck.parameter("context_id", context)
            let selector: UInt16
            switch query.string("direction") {
            case nil, "ancestors": selector = 0
            case "descendants": selector = 1
            default:
                throw AdminError(.invalidArgument, "direction is ancestors or descendants", field: "direction")
            }
            // 0: as deep as the bus follows.
            let depth = UInt16(try query.integer("depth", in: 1...UInt64(Limits.maxLineageDepth)) ?? 0)
            let page = try contextCall { () throws(BusError) in
                try supervisor.contexts.lineage(
                    ContextQuery(ref: 0, id: id, selector: selector, depth: depth), by: principal)
            }
            return AdminJSON.response(ContextJSON.Lineage(contexts: page.heads.map(ContextJSON.Head.init)))
        }
        addContextWriteRoutes(to: routes)
        addContextWatchRoute(to: routes)
    }

    /// The agent a context request acts as: the caller in its own tenant; in another tenant (an
    /// admin's `tenant` parameter) `tenant:agent`, as when it sends a message there, so it never
    /// takes the name of one of that tenant's agents. Admins read and write every context of the
    /// tenant, observers read them; the others have what the contexts' scopes give them.
    func contextPrincipal(_ caller: Caller, _ query: Query) throws(AdminError) -> ContextPrincipal {
        let tenant = try caller.tenant(try query.identifier("tenant"))
        let agentID = tenant == caller.key.tenant ? caller.key.agentID : "\(caller.key.tenant):\(caller.key.agentID)"
        return ContextPrincipal(
            tenant: tenant, agentID: agentID, readsAll: caller.readsTenant, writesAll: caller.isAdmin)
    }

    /// Runs a call of the context service; its refusal becomes the API's error, naming the field
    /// `fields` gives for its code.
    func contextCall<T>(_ fields: [ErrorCode: String] = [:], _ body: () throws(BusError) -> T) throws(AdminError) -> T {
        do throws(BusError) {
            return try body()
        } catch {
            throw AdminError(error, field: fields[error.code])
        }
    }

    /// A context version as the answer: `json` (its head, with its body for GET), and its `ETag`.
    static func contextResponse(_ json: ByteBuffer, _ head: ContextHead, status: HTTPResponse.Status = .ok)
        -> Response
    {
        Response(
            status: status, headers: [.contentType: "application/json", .eTag: ContextJSON.eTag(head)],
            body: ResponseBody(byteBuffer: json))
    }

    /// The versions a parameter may name: from 1 to what PostgreSQL's bigint holds (as the bus
    /// stores them).
    static let versions: ClosedRange<UInt64> = 1...UInt64(Int64.max)

    /// The `metadata=key:value` filters of a list: each key an identifier, the value what follows
    /// the first colon.
    private static func metadataFilters(_ filters: [String]) throws(AdminError) -> [MetadataEntry] {
        guard filters.count <= Limits.maxListCount else {
            throw AdminError(.invalidArgument, "at most \(Limits.maxListCount) metadata filters", field: "metadata")
        }
        var entries: [MetadataEntry] = []
        for filter in filters {
            // Among scalars, not Characters: a value that starts with a combining mark makes one
            // Character of the colon and that mark.
            let scalars = filter.unicodeScalars
            guard let colon = scalars.firstIndex(of: ":") else {
                throw AdminError(.invalidArgument, "a metadata filter is key:value", field: "metadata")
            }
            let key = try AdminCheck.identifier(String(scalars[..<colon]), field: "metadata")
            entries.append(MetadataEntry(key: key, value: String(scalars[scalars.index(after: colon)...])))
        }
        return entries
    }
}
