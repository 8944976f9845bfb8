import Actors
import Bus
import Hummingbird

/// `/api/v1/agents`: the registry (list and filter, one agent, register, unregister) and live
/// sessions (disconnect).
extension AdminAPI {
    /// An agent as the API shows it.
    struct AgentView: Encodable {
        var agentID: String
        var tenant: String
        var type: String
        var capabilities: [String]
        var metadata: [String: String]
        var location: String
        /// `online` or `offline`.
        var status: String
        /// `ready`, `busy` or `draining` while online; `busy` offline.
        var readiness: String
        var inFlight: UInt32
        /// In a cluster, the node holding the agent's live session.
        var node: String?

        init(_ info: AgentInfo, tenant: String, node: String?) {
            agentID = info.agentID
            self.tenant = tenant
            type = info.description.agentType
            capabilities = info.description.capabilities
            metadata = Dictionary(info.description.metadata.map { ($0.key, $0.value) }) { $1 }
            location = info.description.location
            status = "\(info.status)"
            readiness = "\(info.readiness)"
            inFlight = info.inFlight
            self.node = node
        }
    }

    /// The body of PUT /agents/{agent_id}: what REGISTER says.
    struct RegisterInput: AdminInput {
        var type: String
        var capabilities: [String]?
        var metadata: [String: String]?
        var location: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case type, capabilities, metadata, location
        }
    }

    func addAgentRoutes(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/agents") { request, _ in
            let caller = try await caller(request)
            let query = try request.query(allowing: ["tenant", "type", "capability", "status", "limit", "cursor"])
            let tenant = try caller.tenant(try query.identifier("tenant"))
            let status: AgentStatus
            switch query.string("status") {
            case nil, "any": status = .any
            case "online": status = .online
            case "offline": status = .offline
            default: throw AdminError(.invalidArgument, "status must be online, offline or any", field: "status")
            }
            let filter = Discover(
                ref: 0, agentType: try query.identifier("type") ?? "",
                capability: try query.identifier("capability") ?? "", status: status,
                cursor: try query.identifier("cursor") ?? "", limit: UInt16(try query.limit()))
            let (agents, next) = supervisor.discover(tenant: tenant, filter)
            return AdminJSON.response(
                Page(items: agents.map { view($0, tenant: tenant) }, nextCursor: next.isEmpty ? nil : next))
        }
        routes.on(.get, "/api/v1/agents/{agent_id}") { request, context in
            let key = try agentKey(request, context, try await caller(request))
            guard let info = supervisor.agent(key) else { throw AdminError(supervisor.unknown(key)) }
            return AdminJSON.response(view(info, tenant: key.tenant))
        }
        routes.on(.put, "/api/v1/agents/{agent_id}") { request, context in
            let (key, caller) = try await managedAgent(request, context)
            let input = try await request.input(RegisterInput.self, context: context)
            try AdminCheck.text(input.location ?? "", field: "location", maxCharacters: 64)
            // The wire's bound on any list.
            guard (input.capabilities ?? []).count <= Limits.maxListCount else {
                throw AdminError(.invalidArgument, "at most \(Limits.maxListCount) capabilities", field: "capabilities")
            }
            guard (input.metadata ?? [:]).count <= Limits.maxListCount else {
                throw AdminError(.invalidArgument, "at most \(Limits.maxListCount) entries", field: "metadata")
            }
            for (key, value) in input.metadata ?? [:] {
                try AdminCheck.text(value, field: "metadata.\(key)", maxCharacters: 256)
            }
            let description = AgentDescription(
                agentType: input.type, capabilities: input.capabilities ?? [], location: input.location ?? "",
                metadata: (input.metadata ?? [:]).sorted { $0.key < $1.key }.map {
                    MetadataEntry(key: $0.key, value: $0.value)
                })
            let isNew: Bool
            do throws(BusError) {
                isNew = try await supervisor.register(key, description, by: operatorName(caller, acting: key))
            } catch {
                throw AdminError(error, field: Self.registerField(error))
            }
            let info =
                supervisor.agent(key)
                ?? AgentInfo(
                    agentID: key.agentID, description: description, status: .offline, readiness: .busy, inFlight: 0)
            return AdminJSON.response(view(info, tenant: key.tenant), status: isNew ? .created : .ok)
        }
        routes.on(.delete, "/api/v1/agents/{agent_id}") { request, context in
            let (key, caller) = try await managedAgent(request, context)
            do throws(BusError) {
                try await supervisor.unregister(key, by: operatorName(caller, acting: key))
            } catch {
                throw AdminError(error)
            }
            return AdminJSON.noContent
        }
        routes.on(.post, "/api/v1/agents/{agent_id}/disconnect") { request, context in
            let (key, caller) = try await managedAgent(request, context)
            guard supervisor.routing.session(for: key) != nil else {
                throw supervisor.registry.isRegistered(key)
                    ? AdminError(.offline, "\(key.agentID) has no live session")
                    : AdminError(supervisor.unknown(key))
            }
            supervisor.disconnect(key, GoAway(code: .replaced, message: "disconnected by \(caller.key)"))
            supervisor.record(
                "agent.disconnected", tenant: key.tenant, agentID: key.agentID, ["by": "\(caller.key)"])
            return AdminJSON.noContent
        }
    }

    /// The agent the path names, in the tenant the caller may read (`tenant` parameter for admins).
    /// `info` as the API shows it, with the node of its session in a cluster.
    private func view(_ info: AgentInfo, tenant: String) -> AgentView {
        AgentView(info, tenant: tenant, node: supervisor.node(of: AgentKey(tenant: tenant, agentID: info.agentID)))
    }

    func agentKey(_ request: Request, _ context: AdminContext, _ caller: Caller) throws(AdminError) -> AgentKey {
        let query = try request.query(allowing: ["tenant"])
        return AgentKey(
            tenant: try caller.tenant(try query.identifier("tenant")),
            agentID: try AdminCheck.parameter("agent_id", context))
    }

    /// The agent the path names, which the caller must be allowed to change.
    private func managedAgent(_ request: Request, _ context: AdminContext) async throws(AdminError) -> (
        AgentKey, Caller
    ) {
        let caller = try await caller(request)
        let key = try agentKey(request, context, caller)
        try caller.requireManage(key)
        return (key, caller)
    }

    /// Who to name in the audit event when the caller is not the agent itself.
    private func operatorName(_ caller: Caller, acting key: AgentKey) -> String? {
        caller.key == key ? nil : "\(caller.key)"
    }

    /// The body field a registration refusal concerns (the registry names them as the wire does).
    private static func registerField(_ error: BusError) -> String? {
        ["agent_type": "type", "capability": "capabilities", "metadata.key": "metadata", "location": "location"]
            .first { error.message.hasPrefix($0.key) }?.value
    }
}
