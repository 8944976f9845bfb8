import Actors
import Bus
import Hummingbird
import Persistence

/// `/api/v1/tenants`: the tenants (declared, or seen in agents and credentials), declaring one,
/// and one tenant's counters.
extension AdminAPI {
    struct TenantInput: AdminInput {
        var id: String
        var name: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, name
        }
    }

    struct CountersView: Encodable {
        var tenant: String
        var agentsRegistered: Int
        var agentsOnline: Int
        /// Stored messages by status; absent without PostgreSQL.
        var messages: [String: Int]?
        var deadLetters: Int?
    }

    func addTenantRoutes(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/tenants") { request, _ in
            try await caller(request).requireAdmin()
            let query = try request.query(allowing: ["limit", "cursor"])
            let (limit, cursor) = (try query.limit(), try query.identifier("cursor") ?? "")
            let tenants = try await withRecords { records throws(SidecarError) in
                try records.tenants(after: cursor, limit: limit + 1)
            }
            return AdminJSON.response(Page(tenants, limit: limit) { $0.id })
        }
        routes.on(.post, "/api/v1/tenants") { request, context in
            let caller = try await caller(request)
            try caller.requireAdmin()
            _ = try request.query(allowing: [])
            let input = try await request.input(TenantInput.self, context: context)
            let id = try AdminCheck.identifier(input.id, field: "id")
            let name = input.name ?? ""
            try AdminCheck.text(name, field: "name", maxCharacters: 64)
            guard
                let tenant = try await withRecords({ records throws(SidecarError) in
                    try records.createTenant(id, name: name)
                })
            else { throw AdminError(.conflict, "tenant \(id) exists", field: "id") }
            supervisor.record("tenant.created", tenant: id, agentID: "", ["by": "\(caller.key)"])
            return AdminJSON.response(tenant, status: .created)
        }
        routes.on(.get, "/api/v1/tenants/{tenant}/counters") { request, context in
            let caller = try await caller(request)
            _ = try request.query(allowing: [])
            let tenant = try caller.tenant(try AdminCheck.parameter("tenant", context))
            try caller.requireTenantReader()
            let (registered, online) = supervisor.agentCounts(of: tenant)
            var view = CountersView(tenant: tenant, agentsRegistered: registered, agentsOnline: online)
            if records != nil {
                let counts = try await withRecords { records throws(SidecarError) in try records.counts(of: tenant) }
                (view.messages, view.deadLetters) = (counts.messages, counts.deadLetters)
            }
            return AdminJSON.response(view)
        }
    }
}
