import Actors
import Bus
import Hummingbird
import Persistence

/// `/api/v1/dead-letters`: what the bus gave up on, with reasons; replayed (sent again as new
/// stored messages) or purged by admins.
extension AdminAPI {
    /// The body of POST /dead-letters/replay: the dead letters to send again.
    struct ReplayInput: AdminInput {
        var ids: [String]
        var tenant: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case ids, tenant
        }
    }

    /// The body of POST /dead-letters/purge: exactly one of `ids`, `agent` and `all: true`.
    struct PurgeInput: AdminInput {
        var ids: [String]?
        var agent: String?
        var all: Bool?
        var tenant: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case ids, agent, all, tenant
        }
    }

    /// What became of each dead letter a replay named.
    struct ReplayView: Encodable {
        struct Replayed: Encodable {
            var deadLetterID: String
            var messageID: String
        }
        struct Failed: Encodable {
            var deadLetterID: String
            var code: String
            var message: String
        }
        var replayed: [Replayed] = []
        var failed: [Failed] = []
        /// Ids that name no dead letter of the tenant (or one another replay took first).
        var notFound: [String] = []
    }

    struct PurgedView: Encodable {
        var purged: Int
    }

    func addDeadLetterRoutes(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/dead-letters") { request, _ in
            let caller = try await caller(request)
            let query = try request.query(allowing: ["tenant", "agent", "limit", "cursor"])
            let tenant = try caller.tenant(try query.identifier("tenant"))
            var agent = try query.identifier("agent")
            if !caller.readsTenant {
                // An agent reads its own dead letters only.
                agent = agent ?? caller.key.agentID
                try caller.requireRead(AgentKey(tenant: tenant, agentID: agent ?? ""))
            }
            let (limit, cursor) = (try query.limit(), try query.numericCursor())
            let letters = try await withRecords { [agent] records throws(SidecarError) in
                try records.deadLetters(tenant: tenant, agent: agent, after: cursor, limit: limit + 1)
            }
            return AdminJSON.response(Page(letters, limit: limit) { $0.id })
        }
        routes.on(.get, "/api/v1/dead-letters/{dead_letter_id}") { request, context in
            let caller = try await caller(request)
            let tenant = try caller.tenant(try request.query(allowing: ["tenant"]).identifier("tenant"))
            let id = try AdminCheck.id(context.parameters.get("dead_letter_id") ?? "", field: "dead_letter_id")
            guard
                let letter = try await withRecords({ records throws(SidecarError) in
                    try records.deadLetter(id, tenant: tenant)
                }),
                caller.mayRead(AgentKey(tenant: tenant, agentID: letter.to))
            else { throw AdminError(.notFound, "no dead letter \(id) in tenant \(tenant)") }
            return AdminJSON.response(letter)
        }
        routes.on(.post, "/api/v1/dead-letters/replay") { request, context in
            let caller = try await caller(request)
            try caller.requireAdmin()
            _ = try request.query(allowing: [])
            let input = try await request.input(ReplayInput.self, context: context)
            let tenant = try caller.tenant(try AdminCheck.optionalIdentifier(input.tenant, field: "tenant"))
            // Each id once, in the order given, answered under the text it was given as.
            var seen = Set<String>()
            let texts = input.ids.filter { seen.insert($0).inserted }
            let ids = try Self.ids(texts)
            let letters = try await withRecords { records throws(SidecarError) in
                try records.deadLetters(tenant: tenant, ids: ids, limit: ids.count)
            }
            var view = ReplayView()
            for (text, id) in zip(texts, ids) {
                guard let letter = letters.first(where: { $0.id == "\(id)" }) else {
                    view.notFound.append(text)
                    continue
                }
                let receiver = AgentKey(tenant: tenant, agentID: letter.to)
                guard supervisor.knows(receiver) else {
                    let refusal = supervisor.unknown(receiver)
                    view.failed.append(
                        .init(deadLetterID: letter.id, code: refusal.code.name, message: refusal.message))
                    continue
                }
                let messageID = supervisor.nextMessageID()
                let expiresAtMs = WallClock.nowMs() + supervisor.configuration.storedMessageTTLMs
                guard
                    let stored = try await withRecords({ records throws(SidecarError) in
                        try records.replay(id, tenant: tenant, as: messageID, expiresAtMs: expiresAtMs)
                    })
                else {
                    view.notFound.append(letter.id)
                    continue
                }
                supervisor.messageStored(messageID, to: receiver, from: stored.from, bytes: stored.bytes)
                view.replayed.append(.init(deadLetterID: letter.id, messageID: "\(messageID)"))
            }
            supervisor.record(
                "dead_letters.replayed", tenant: tenant, agentID: "",
                ["by": "\(caller.key)", "count": "\(view.replayed.count)"])
            return AdminJSON.response(view)
        }
        routes.on(.post, "/api/v1/dead-letters/purge") { request, context in
            let caller = try await caller(request)
            try caller.requireAdmin()
            _ = try request.query(allowing: [])
            let input = try await request.input(PurgeInput.self, context: context)
            let tenant = try caller.tenant(try AdminCheck.optionalIdentifier(input.tenant, field: "tenant"))
            let ids = try input.ids.map { ids throws(AdminError) in try Self.ids(ids) }
            let agent = try AdminCheck.optionalIdentifier(input.agent, field: "agent")
            guard input.all != false else {
                throw AdminError(.invalidArgument, "all is true or left out", field: "all")
            }
            guard [ids != nil, agent != nil, input.all == true].count(where: { $0 }) == 1 else {
                throw AdminError(.invalidArgument, "give exactly one of ids, agent and all: true", field: "ids")
            }
            let purged = try await withRecords { records throws(SidecarError) in
                try records.purgeDeadLetters(tenant: tenant, agent: agent, ids: ids)
            }
            supervisor.record(
                "dead_letters.purged", tenant: tenant, agentID: agent ?? "",
                ["by": "\(caller.key)", "count": "\(purged)"])
            return AdminJSON.response(PurgedView(purged: purged))
        }
    }

    /// 1 to 256 dead letter ids, each a decimal string.
    private static func ids(_ texts: [String]) throws(AdminError) -> [UInt64] {
        guard (1...Limits.maxListCount).contains(texts.count) else {
            throw AdminError(.invalidArgument, "give 1 to \(Limits.maxListCount) ids", field: "ids")
        }
        var ids: [UInt64] = []
        for (index, text) in texts.enumerated() { ids.append(try AdminCheck.id(text, field: "ids.\(index)")) }
        return ids
    }
}
