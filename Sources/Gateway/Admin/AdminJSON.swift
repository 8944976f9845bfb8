import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// How the admin API writes JSON: snake_case keys, sorted, UTF-8.
enum AdminJSON {
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// `value` as a JSON response with `status`.
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data(value))))
    }

    /// `value` as JSON text.
    static func data(_ value: some Encodable) -> Data {
        // Encoding the API's own plain structs cannot fail; an empty object stands in if it ever did.
        (try? encoder.encode(value)) ?? Data("{}".utf8)
    }

    /// An empty 204 response.
    static var noContent: Response { Response(status: .noContent) }
}
