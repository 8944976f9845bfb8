import Foundation
import Gateway
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A plain HTTP client of a test bus's admin API (URLSession over real sockets).
struct AdminClient {
    let port: Int
    /// Sent as `Authorization: Bearer` when set.
    var token: String?

    /// One response: status, headers (names lowercased) and body.
    struct Reply {
        let status: Int
        let headers: [String: String]
        let body: Data

        /// The body as a JSON object (empty if it is not one).
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        /// The error code of an error body.
        var code: String? { json["code"] as? String }
        var field: String? { json["field"] as? String }
        /// The `items` of a page.
        var items: [[String: Any]] { json["items"] as? [[String: Any]] ?? [] }
        func header(_ name: String) -> String? { headers[name.lowercased()] }
    }

    /// Sends `method path` with `json` (an encodable object, or raw text when a String) as the body.
    func call(_ method: String, _ path: String, _ json: Any? = nil, headers: [String: String] = [:]) async throws
        -> Reply
    {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        switch json {
        case let text as String: request.httpBody = Data(text.utf8)
        case let object?: request.httpBody = try JSONSerialization.data(withJSONObject: object)
        case nil: break
        }
        if json != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (body, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var lowercased: [String: String] = [:]
        for case (let name as String, let value as String) in http.allHeaderFields {
            lowercased[name.lowercased()] = value
        }
        return Reply(status: http.statusCode, headers: lowercased, body: body)
    }

    func get(_ path: String, headers: [String: String] = [:]) async throws -> Reply {
        try await call("GET", path, headers: headers)
    }
    func post(_ path: String, _ json: Any? = nil) async throws -> Reply { try await call("POST", path, json) }
    func put(_ path: String, _ json: Any) async throws -> Reply { try await call("PUT", path, json) }
    func delete(_ path: String) async throws -> Reply { try await call("DELETE", path) }

    /// The same client with another token.
    func with(token: String?) -> AdminClient { AdminClient(port: port, token: token) }
}

extension TestBus {
    /// A client of the bus's admin API, with a token of `agent` in `tenant` with `roles` (none when nil).
    func admin(_ agent: String? = "root", tenant: String = "ops", roles: [String] = ["admin"]) async throws
        -> AdminClient
    {
        var client = AdminClient(port: try await #require(server.admin).port())
        if let agent { client.token = try await token(agent, tenant: tenant, roles: roles) }
        return client
    }
}
