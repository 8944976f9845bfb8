import Actors
import Bus
import Foundation
import Hummingbird
import Persistence

/// `/api/v1/messages`: send a message as an agent (or, for admins, as any agent), and follow a
/// stored message's status by id.
extension AdminAPI {
    /// The body of POST /messages. The payload is text (`payload`) or bytes (`payload_base64`).
    struct SendInput: AdminInput {
        var to: String
        var from: String?
        var tenant: String?
        var payload: String?
        var payloadBase64: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case to, from, tenant, payload, payloadBase64 = "payload_base64"
        }

        /// The payload's bytes: exactly one of the two fields.
        func bytes() throws(AdminError) -> [UInt8] {
            switch (payload, payloadBase64) {
            case (let text?, nil): return Array(text.utf8)
            case (nil, let encoded?):
                guard let data = Data(base64Encoded: encoded) else {
                    throw AdminError(.invalidArgument, "not valid base64", field: "payload_base64")
                }
                return Array(data)
            default:
                throw AdminError(.invalidArgument, "give exactly one of payload and payload_base64", field: "payload")
            }
        }
    }

    /// What POST /messages answers: the stored message's id and status.
    struct SentView: Encodable {
        var id: String
        var status = "queued"
    }

    func addMessageRoutes(to routes: AdminRoutes) {
        routes.on(.post, "/api/v1/messages") { request, context in
            let caller = try await caller(request)
            _ = try request.query(allowing: [])
            let input = try await request.input(SendInput.self, context: context)
            let tenant = try caller.tenant(try AdminCheck.optionalIdentifier(input.tenant, field: "tenant"))
            // By default the caller; in another tenant as `tenant:agent`, not the name of one of its agents.
            let own = tenant == caller.key.tenant ? caller.key.agentID : "\(caller.key.tenant):\(caller.key.agentID)"
            let from = try AdminCheck.identifier(input.from ?? own, field: "from")
            let to = AgentKey(tenant: tenant, agentID: try AdminCheck.identifier(input.to, field: "to"))
            try caller.requireSend(as: AgentKey(tenant: tenant, agentID: from))
            let payload = try input.bytes()
            do throws(BusError) {
                let id = try await supervisor.storeMessage(to: to, from: from, payload: payload)
                return AdminJSON.response(SentView(id: "\(id)"), status: .accepted)
            } catch {
                throw AdminError(error, field: [.unknownAgent: "to", .tooLarge: "payload"][error.code])
            }
        }
        routes.on(.get, "/api/v1/messages/{message_id}") { request, context in
            let caller = try await caller(request)
            _ = try request.query(allowing: [])
            let id = try AdminCheck.id(context.parameters.get("message_id") ?? "", field: "message_id")
            // A message the caller may not read is not found: ids are time-ordered, and whether one
            // exists in another tenant is not the caller's to learn.
            guard let message = try await withRecords({ records throws(SidecarError) in try records.message(id) }),
                caller.mayRead(
                    AgentKey(tenant: message.tenant, agentID: message.to),
                    AgentKey(tenant: message.tenant, agentID: message.from))
            else { throw AdminError(.notFound, "no stored message \(id)") }
            return AdminJSON.response(message)
        }
    }
}
