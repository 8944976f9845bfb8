import Bus
import Foundation
import Yams

/// The admin API's OpenAPI document (`openapi.yaml`, kept beside this file and shipped as a
/// resource) and the HTML page that renders it: every operation with its summary, description,
/// parameters, request body and responses, with no script fetched from elsewhere.
struct APIDocument: Sendable {
    /// The document as written.
    let yaml: String
    /// The page of `/api/v1/docs`.
    let html: String

    /// Reads and parses the document. - Throws: when it is missing or is not a YAML mapping.
    init() throws {
        yaml = try String(contentsOf: try Self.location(), encoding: .utf8)
        guard let document = try Yams.load(yaml: yaml) as? [String: Any] else { throw CocoaError(.fileReadCorruptFile) }
        html = Self.render(document)
    }

    private static let methods = ["get", "put", "post", "delete"]

    /// Where SwiftPM put the resource: in the `acb_Gateway.resources` folder beside the executable
    /// (an installed `acb` needs it there). Not `Bundle.module`, which ends the process when the
    /// folder is missing instead of letting the start fail with this error.
    private static func location() throws -> URL {
        let beside = Bundle.main.executableURL?.deletingLastPathComponent() ?? Bundle.main.bundleURL
        let url = beside.appendingPathComponent("acb_Gateway.resources/openapi.yaml")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw BusError(
                .internal, "the admin API's document is missing: install \(url.path) beside the acb executable")
        }
        return url
    }

    private static func render(_ document: [String: Any]) -> String {
        let info = document["info"] as? [String: Any] ?? [:]
        let title = escape(info["title"] as? String ?? "API")
        var body = "<h1>\(title) <small>\(escape(info["version"] as? String ?? ""))</small></h1>\n"
        body += "<p>\(escape(info["description"] as? String ?? ""))</p>\n"
        body += "<p>The document itself: <a href=\"/api/v1/openapi.yaml\">openapi.yaml</a>.</p>\n"
        let paths = document["paths"] as? [String: Any] ?? [:]
        for path in paths.keys.sorted() {
            guard let item = paths[path] as? [String: Any] else { continue }
            for method in methods {
                guard let operation = item[method] as? [String: Any] else { continue }
                body += section(method: method, path: path, operation, shared: item["parameters"] as? [Any] ?? [])
            }
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>\(title)</title>
            <style>
            body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
            section{border:1px solid #ccd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
            code.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}
            table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
            </style></head><body>
            \(body)</body></html>
            """
    }

    private static func section(method: String, path: String, _ operation: [String: Any], shared: [Any]) -> String {
        var html = "<section id=\"\(escape(operation["operationId"] as? String ?? path))\">\n"
        html += "<h2><code class=\"m\">\(method)</code><code>\(escape(path))</code></h2>\n"
        html += "<p><b>\(escape(operation["summary"] as? String ?? ""))</b></p>\n"
        html += "<p>\(escape(operation["description"] as? String ?? ""))</p>\n"
        let parameters = (shared + (operation["parameters"] as? [Any] ?? [])).compactMap { $0 as? [String: Any] }
        if !parameters.isEmpty {
            html += "<table><tr><th>parameter</th><th>in</th><th>description</th></tr>\n"
            for parameter in parameters {
                let name =
                    parameter["name"] as? String ?? (parameter["$ref"] as? String)?.split(separator: "/").last.map(
                        String.init) ?? ""
                html += "<tr><td><code>\(escape(name))</code></td><td>\(escape(parameter["in"] as? String ?? ""))</td>"
                html += "<td>\(escape(parameter["description"] as? String ?? ""))</td></tr>\n"
            }
            html += "</table>\n"
        }
        if let request = operation["requestBody"] as? [String: Any] {
            html += "<p>Body: \(escape(schemaName(request)))</p>\n"
        }
        let responses = operation["responses"] as? [String: Any] ?? [:]
        html += "<p>Responses: "
        html += responses.keys.sorted().map { status in
            let response = responses[status] as? [String: Any] ?? [:]
            let what =
                response["description"] as? String ?? (response["$ref"] as? String)?.split(separator: "/").last.map(
                    String.init) ?? ""
            return "<code>\(escape(status))</code> \(escape(what))"
        }.joined(separator: "; ")
        return html + "</p>\n</section>\n"
    }

    /// The name of the schema a request body refers to.
    private static func schemaName(_ body: [String: Any]) -> String {
        let content = body["content"] as? [String: Any]
        let json = content?["application/json"] as? [String: Any]
        let schema = json?["schema"] as? [String: Any]
        return (schema?["$ref"] as? String)?.split(separator: "/").last.map(String.init) ?? "JSON"
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
