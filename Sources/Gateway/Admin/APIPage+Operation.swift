import Foundation
import Yams

/// An operation's section: summary, description, the token and roles it needs, its parameters,
/// its request body, and a curl command (its responses are in `APIPage+Responses.swift`).
extension APIPage {
    /// A method on a path, as the document declares it.
    struct Operation {
        /// `get`, `post`, …: lower case, as in the document.
        let method: String
        let path: String
        /// The Operation Object.
        let node: Node
        /// The parameters the path item declares for all its operations.
        let shared: [Node]

        /// The id of its section: the operationId, else the method and path.
        var id: String { node["operationId"]?.string ?? "\(method) \(path)" }
    }

    /// The methods a path item may hold, in the order the page shows them.
    static let methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"]

    /// Every operation, in the order of the document's paths.
    var operations: [Operation] {
        var operations: [Operation] = []
        for (key, item) in document["paths"]?.mapping ?? [:] {
            guard let path = key.string, let item = resolved(item) else { continue }
            let shared = item["parameters"]?.sequence.map(Array.init) ?? []
            for method in Self.methods {
                guard let node = item[method] else { continue }
                operations.append(Operation(method: method, path: path, node: node, shared: shared))
            }
        }
        return operations
    }

    /// The section of `operation`; `commonHeaders` are described once at the top, not under each response.
    func section(_ operation: Operation, commonHeaders: Set<String>) -> String {
        let node = operation.node
        var html = "<section id=\"\(Self.anchor(operation.id))\" class=\"operation\">\n"
        html += "<h3>\(Self.methodBadge(operation.method)) <code>\(Self.escape(operation.path))</code></h3>\n"
        if let summary = node["summary"]?.string { html += "<p class=\"summary\">\(Self.prose(summary))</p>\n" }
        if let text = node["description"]?.string { html += "<p>\(Self.prose(text))</p>\n" }
        if node["deprecated"]?.bool == true { html += "<p><b>Deprecated.</b></p>\n" }
        html += access(operation)
        html += parameterTable(parameters(of: operation))
        html += requestBody(operation)
        html += responseList(operation, commonHeaders: commonHeaders)
        html += "<h4>With curl</h4>\n<pre class=\"curl\">\(Self.escape(curl(operation)))</pre>\n"
        return html + "</section>\n"
    }

    /// Whether the operation needs a token: its `security` (else the document's) asks for one and
    /// does not also accept none (an empty requirement).
    func needsToken(_ operation: Operation) -> Bool {
        guard let requirements = (operation.node["security"] ?? document["security"])?.sequence else { return false }
        return !requirements.isEmpty && !requirements.contains { $0.mapping?.isEmpty ?? false }
    }

    /// The token the operation needs and who may call it: `x-acb-roles`, a list of role names or a
    /// sentence when it depends on more than the role ("admin, or the agent itself").
    private func access(_ operation: Operation) -> String {
        let token = needsToken(operation)
        var html = "<p class=\"access\(token ? "" : " open")\"><b>Token:</b> "
        html += token ? "an access token, as <code>Authorization: Bearer …</code>" : "none needed"
        switch operation.node["x-acb-roles"] {
        case .sequence(let roles)?:
            let names = roles.compactMap(\.string).map { "<code class=\"role\">\(Self.escape($0))</code>" }
            html += "<br><b>Roles:</b> " + names.joined(separator: ", ")
        case let roles?:
            html += "<br><b>Roles:</b> " + Self.prose(roles.string ?? "")
        case nil:
            break
        }
        return html + "</p>\n"
    }

    /// The operation's parameters with each `$ref` followed, path parameters first: the path item's
    /// and the operation's own, which replace a path item's of the same name and place.
    func parameters(of operation: Operation) -> [Node] {
        let own = (operation.node["parameters"]?.sequence.map(Array.init) ?? []).compactMap(resolved)
        let shared = operation.shared.compactMap(resolved).filter { parameter in
            !own.contains {
                $0["name"]?.string == parameter["name"]?.string && $0["in"]?.string == parameter["in"]?.string
            }
        }
        let places = ["path", "query", "header", "cookie"]
        let rank = { (parameter: Node) in places.firstIndex(of: parameter["in"]?.string ?? "") ?? places.count }
        return (shared + own).enumerated().sorted { (rank($0.element), $0.offset) < (rank($1.element), $1.offset) }
            .map(\.element)
    }

    /// The parameters as a table: name, place, type, whether required, description and example.
    private func parameterTable(_ parameters: [Node]) -> String {
        guard !parameters.isEmpty else { return "" }
        var html = "<h4>Parameters</h4>\n<table class=\"parameters\"><tr><th>Name</th><th>In</th><th>Type</th>"
        html += "<th>Required</th><th>Description</th></tr>\n"
        for parameter in parameters {
            let place = parameter["in"]?.string ?? ""
            let required = parameter["required"]?.bool ?? (place == "path")
            var description = Self.prose(parameter["description"]?.string ?? parameter["schema"].flatMap(summary) ?? "")
            if let example = parameterExample(parameter) {
                description += "<span class=\"note\">Example: <code>\(Self.escape(Self.plain(example)))</code></span>"
            }
            html += "<tr><td class=\"name\"><code>\(Self.escape(parameter["name"]?.string ?? ""))</code></td>"
            html += "<td>\(Self.escape(place))</td><td>\(parameter["schema"].map { typeCell($0) } ?? "")</td>"
            html += "<td>\(Self.requiredMark(required, request: true))</td><td>\(description)</td></tr>\n"
        }
        return html + "</table>\n"
    }

    /// A parameter's example: its own, else its schema's (never one made up, which would mislead).
    func parameterExample(_ parameter: Node) -> Node? {
        if let own = parameter["example"]
            ?? parameter["examples"]?.mapping?.first.flatMap({ resolved($0.value)?["value"] })
        {
            return own
        }
        guard let schema = parameter["schema"] else { return nil }
        let content = resolved(schema)
        return schema["example"] ?? schema["examples"]?.sequence?.first ?? content?["example"]
            ?? content?["examples"]?.sequence?.first
    }

    /// The request body: for each media type, whether it is required, its fields and an example.
    private func requestBody(_ operation: Operation) -> String {
        guard let body = operation.node["requestBody"].flatMap(resolved) else { return "" }
        var html = "<h4>Request body</h4>\n"
        if let text = body["description"]?.string { html += "<p>\(Self.prose(text))</p>\n" }
        for (type, media) in body["content"]?.mapping ?? [:] {
            html += "<p><code>\(Self.escape(type.string ?? ""))</code>, "
            html += body["required"]?.bool == true ? "<span class=\"required\">required</span>" : "optional"
            html += "</p>\n"
            if let schema = media["schema"] { html += schemaBlock(schema, request: true) }
            if Self.isJSON(type.string ?? ""), let example = example(of: media) {
                html += Self.exampleBlock(example, open: true)
            }
        }
        return html
    }

    /// A curl command for the operation: the first server; path parameters filled with their
    /// examples (else left as `{name}`); required query parameters and headers; the token when one
    /// is needed; the request body's example.
    func curl(_ operation: Operation) -> String {
        var path = operation.path
        var query: [String] = []
        var headers: [String] = []
        for parameter in parameters(of: operation) {
            guard let name = parameter["name"]?.string else { continue }
            let value = parameterExample(parameter).map(Self.plain)
            let required = parameter["required"]?.bool ?? false
            switch parameter["in"]?.string {
            case "path":
                let filled = value?.addingPercentEncoding(withAllowedCharacters: Self.unreserved) ?? "{\(name)}"
                path = path.replacingOccurrences(of: "{\(name)}", with: filled)
            case "query" where required: query.append("\(name)=\(value ?? "…")")
            case "header" where required: headers.append("\(name): \(value ?? "…")")
            default: break
            }
        }
        let method = operation.method == "get" ? "" : " -X \(operation.method.uppercased())"
        let url = server + path + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        var lines = ["curl\(method) \(Self.shellQuoted(url))"]
        if needsToken(operation) { lines.append("-H \"Authorization: Bearer $TOKEN\"") }
        lines += headers.map { "-H \(Self.shellQuoted($0))" }
        let body = operation.node["requestBody"].flatMap(resolved)
        if let (type, media) = body?["content"]?.mapping?.first {
            lines.append("-H \(Self.shellQuoted("Content-Type: \(type.string ?? "")"))")
            if Self.isJSON(type.string ?? ""), let example = example(of: media) {
                lines.append("-d \(Self.shellQuoted(Self.json(example, pretty: false)))")
            }
        }
        return lines.joined(separator: " \\\n  ")
    }

    /// The characters a path segment carries as they are (RFC 3986's unreserved ones).
    static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// `text` in single quotes for a POSIX shell.
    static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
