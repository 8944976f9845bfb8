import Yams

/// An operation's responses: each status with its description, headers and body (fields and an
/// example); those that answer with the common error shape are listed apart and linked to it.
extension APIPage {
    /// The operation's responses with each `$ref` followed, by status (`default` last).
    func responses(of operation: Operation) -> [(status: String, response: Node)] {
        let all = (operation.node["responses"]?.mapping ?? [:]).compactMap { key, value -> (String, Node)? in
            guard let status = key.string, let response = resolved(value) else { return nil }
            return (status, response)
        }
        return all.sorted { ($0.0 == "default" ? "~" : $0.0) < ($1.0 == "default" ? "~" : $1.0) }
    }

    /// Whether `response`'s body is the common error shape (``errorSchema``).
    func isError(_ response: Node) -> Bool {
        (response["content"]?.mapping ?? [:]).contains { _, media in
            media["schema"].map { references(of: $0).contains(Self.errorSchema) } ?? false
        }
    }

    /// The headers every response of every operation declares, in the order the first declares
    /// them: described once at the top, not under each response.
    func commonHeaders(_ operations: [Operation]) -> [(name: String, header: Node)] {
        let all = operations.flatMap { responses(of: $0).map(\.response) }
        guard let first = all.first else { return [] }
        return (first["headers"]?.mapping ?? [:]).compactMap { key, value -> (String, Node)? in
            guard let name = key.string, let header = resolved(value),
                all.allSatisfy({ $0["headers"]?[name] != nil })
            else { return nil }
            return (name, header)
        }
    }

    /// The responses: those with a body of their own as blocks, then the errors as a list.
    func responseList(_ operation: Operation, commonHeaders: Set<String>) -> String {
        let all = responses(of: operation)
        var html = "<h4>Responses</h4>\n"
        var shown: [(status: String, content: Node.Mapping)] = []
        for (status, response) in all where !isError(response) {
            html += "<div class=\"response\"><p>\(Self.statusBadge(status)) "
            html += Self.prose(response["description"]?.string ?? "")
            let content = response["content"]?.mapping ?? [:]
            if content.isEmpty { html += " <span class=\"media\">(no body)</span>" }
            html += "</p>\n" + headerNotes(response, leaving: commonHeaders)
            if !content.isEmpty, let same = shown.first(where: { $0.content == content }) {
                html += "<p class=\"media\">Body: the same as with \(Self.statusBadge(same.status))</p>\n</div>\n"
                continue
            }
            shown.append((status, content))
            for (type, media) in content {
                html += "<p class=\"media\">Body: <code>\(Self.escape(type.string ?? ""))</code></p>\n"
                if let schema = media["schema"] { html += schemaBlock(schema, request: false) }
                if Self.isJSON(type.string ?? ""), let example = example(of: media) {
                    html += Self.exampleBlock(example, open: false)
                }
            }
            html += "</div>\n"
        }
        let errors = all.filter { isError($0.response) }
        guard !errors.isEmpty else { return html }
        html += "<p>Errors, each with <a href=\"#errors\">the error body</a>:</p>\n<ul class=\"errors\">\n"
        for (status, response) in errors {
            html += "<li>\(Self.statusBadge(status)) \(Self.prose(response["description"]?.string ?? ""))"
            html += headerNotes(response, leaving: commonHeaders) + "</li>\n"
        }
        return html + "</ul>\n"
    }

    /// The response's headers but those every response carries, with their descriptions.
    private func headerNotes(_ response: Node, leaving common: Set<String>) -> String {
        (response["headers"]?.mapping ?? [:]).compactMap { key, value in
            guard let name = key.string, !common.contains(name) else { return nil }
            let description = resolved(value)?["description"]?.string ?? ""
            return "<span class=\"note\">Header <code>\(Self.escape(name))</code>: \(Self.prose(description))</span>"
        }.joined() + "\n"
    }
}
