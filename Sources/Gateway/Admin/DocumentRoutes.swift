import Hummingbird
import NIOCore

/// `/api/v1/openapi.yaml` and `/api/v1/docs`: the API describes itself, without a token.
extension AdminAPI {
    func addDocumentRoutes(to routes: AdminRoutes, document: APIDocument) {
        routes.on(.get, "/api/v1/openapi.yaml") { request, _ in
            _ = try request.query(allowing: [])
            return Response(
                status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: document.yaml)))
        }
        routes.on(.get, "/api/v1/docs") { request, _ in
            _ = try request.query(allowing: [])
            return Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: document.html)))
        }
    }
}
