import Bus
import Hummingbird
import Persistence

/// `/api/v1/streams/{stream_id}`: how far an upload is stored, as Redis keeps it for resumption.
extension AdminAPI {
    struct UploadView: Encodable {
        var streamID: String
        var tenant: String
        var agentID: String
        var chunks: UInt32
        var bytes: UInt64
        var total: UInt64
    }

    func addStreamRoutes(to routes: AdminRoutes) {
        routes.on(.get, "/api/v1/streams/{stream_id}") { request, context in
            let caller = try await caller(request)
            let query = try request.query(allowing: ["tenant", "agent"])
            let uploader = AgentKey(
                tenant: try caller.tenant(try query.identifier("tenant")),
                agentID: try query.identifier("agent") ?? caller.key.agentID)
            try caller.requireRead(uploader)
            let streamID = try AdminCheck.parameter("stream_id", context)
            guard let redisURL else {
                throw AdminError(.unavailable, "upload progress is kept in Redis, and the bus runs without")
            }
            guard
                let progress = try await blocking({ () throws(SidecarError) in
                    try RedisState.upload(url: redisURL, of: uploader, streamID: streamID)
                })
            else { throw AdminError(.unknownStream, "no upload \(streamID) of \(uploader) in progress") }
            return AdminJSON.response(
                UploadView(
                    streamID: streamID, tenant: uploader.tenant, agentID: uploader.agentID, chunks: progress.chunks,
                    bytes: progress.bytes, total: progress.total))
        }
    }
}
