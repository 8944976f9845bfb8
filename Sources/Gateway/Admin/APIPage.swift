import Yams

/// The HTML page of `/api/v1/docs`, made on the server from the admin API's OpenAPI document: a
/// table of contents, how calls authenticate and the shape every error has, then each operation
/// with the roles it needs (`x-acb-roles`), its parameters, its request and response bodies as
/// tables of fields with examples, and a curl command.
///
/// Every `$ref` is followed (``resolved(_:)``), so a reader sees what a component holds, never its
/// name; references and nested schemas are followed at most ``maxDepth`` deep, so a recursive
/// schema cannot loop. The page is self-contained: inline CSS, no script, nothing fetched.
struct APIPage {
    /// The OpenAPI document as YAML nodes rather than dictionaries, so that paths, properties and
    /// examples keep the order they were written in.
    let document: Node

    /// How many references in a chain, and how many levels of nested schemas, are followed.
    static let maxDepth = 8
    /// The schema of every error body: described once at the top, linked from each operation.
    static let errorSchema = "#/components/schemas/Error"

    /// The whole page.
    var html: String {
        let info = document["info"]
        let title = info?["title"]?.string ?? "API"
        let operations = self.operations
        let common = Set(commonHeaders(operations).map(\.name))
        var body = "<header><h1>\(Self.escape(title))"
        if let version = info?["version"]?.string { body += " <small>version \(Self.escape(version))</small>" }
        body += "</h1>\n<p>\(Self.prose(info?["description"]?.string ?? ""))</p>\n"
        body += "<p>The document itself: <a href=\"/api/v1/openapi.yaml\">openapi.yaml</a>.</p></header>\n"
        body += contents(operations)
        body += conventions(operations)
        body += errors(operations)
        for (tag, members) in Self.grouped(operations) {
            body += "<h2 id=\"\(Self.anchor("tag-" + tag))\" class=\"tag\">\(Self.escape(tag))</h2>\n"
            if let text = tagDescription(tag) { body += "<p>\(Self.prose(text))</p>\n" }
            body += members.map { section($0, commonHeaders: common) }.joined()
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(Self.escape(title))</title>
            <style>\(Self.style)</style></head><body>
            \(body)</body></html>
            """
    }

    /// The operations under each tag, tags in the document's order (then any it does not list),
    /// operations in the order of their paths; an operation without a tag goes under "other".
    static func grouped(_ operations: [Operation]) -> [(tag: String, operations: [Operation])] {
        var order: [String] = []
        var members: [String: [Operation]] = [:]
        for operation in operations {
            let tag = operation.node["tags"]?.sequence?.first?.string ?? "other"
            if members[tag] == nil { order.append(tag) }
            members[tag, default: []].append(operation)
        }
        return order.map { ($0, members[$0] ?? []) }
    }

    /// The description the document's `tags` give `tag`, if any.
    private func tagDescription(_ tag: String) -> String? {
        document["tags"]?.sequence?.first { $0["name"]?.string == tag }?["description"]?.string
    }

    /// The table of contents: the two general sections, then every operation by tag.
    private func contents(_ operations: [Operation]) -> String {
        var html = "<nav id=\"contents\"><h2>Contents</h2><ul>\n"
        html += "<li><a href=\"#conventions\">Calling the API</a></li>\n<li><a href=\"#errors\">Errors</a></li>\n"
        for (tag, members) in Self.grouped(operations) {
            html += "<li><a class=\"tag\" href=\"#\(Self.anchor("tag-" + tag))\">\(Self.escape(tag))</a><ul>\n"
            for operation in members {
                html += "<li><a href=\"#\(Self.anchor(operation.id))\">\(Self.methodBadge(operation.method)) "
                html += "<code>\(Self.escape(operation.path))</code></a> "
                html += "\(Self.prose(operation.node["summary"]?.string ?? ""))</li>\n"
            }
            html += "</ul></li>\n"
        }
        return html + "</ul></nav>\n"
    }

    /// Where to send requests, how to authenticate, and the headers every response carries.
    private func conventions(_ operations: [Operation]) -> String {
        var html = "<section id=\"conventions\" class=\"general\"><h2>Calling the API</h2>\n"
        html += "<p>The curl commands below use the server <code>\(Self.escape(server))</code>"
        html += " and, where an operation needs a token, an access token in <code>$TOKEN</code>.</p>\n"
        let schemes = document["components"]?["securitySchemes"]?.mapping ?? [:]
        if !schemes.isEmpty {
            html += "<table><tr><th>Authentication</th><th>How</th></tr>\n"
            for (name, scheme) in schemes {
                let scheme = resolved(scheme)
                var how = Self.escape(
                    [scheme?["type"]?.string, scheme?["scheme"]?.string].compactMap { $0 }.joined(separator: " "))
                if let format = scheme?["bearerFormat"]?.string { how += " (\(Self.escape(format)))" }
                if scheme?["scheme"]?.string == "bearer" { how += ": the header <code>Authorization: Bearer …</code>" }
                html += "<tr><td><code>\(Self.escape(name.string ?? ""))</code></td><td>\(how)"
                if let text = scheme?["description"]?.string { html += ". \(Self.prose(text))" }
                html += "</td></tr>\n"
            }
            html += "</table>\n"
        }
        let common = commonHeaders(operations)
        if !common.isEmpty {
            html += "<p>Every response carries these headers:</p>\n<table><tr><th>Header</th><th>Meaning</th></tr>\n"
            for (name, header) in common {
                html += "<tr><td><code>\(Self.escape(name))</code></td>"
                html += "<td>\(Self.prose(header["description"]?.string ?? ""))</td></tr>\n"
            }
            html += "</table>\n"
        }
        return html + "</section>\n"
    }

    /// The error shape once, with an example, and every status that answers with it.
    private func errors(_ operations: [Operation]) -> String {
        var html = "<section id=\"errors\" class=\"general\"><h2>Errors</h2>\n"
        guard let schema = target(of: Self.errorSchema) else {
            return html + "<p>The document describes no common error shape.</p></section>\n"
        }
        html += "<p>Every error answers with this JSON body (<code>application/json</code>).</p>\n"
        if let text = schema["description"]?.string { html += "<p>\(Self.prose(text))</p>\n" }
        html += fieldTable(fields(of: schema), request: false)
        if let example = example(for: schema) { html += Self.exampleBlock(example, open: true) }
        var seen = Set<String>()
        var rows: [(status: String, text: String)] = []
        for operation in operations {
            for (status, response) in responses(of: operation) where isError(response) {
                let text = response["description"]?.string ?? ""
                if seen.insert(status + "\n" + text).inserted { rows.append((status, text)) }
            }
        }
        if !rows.isEmpty {
            html += "<p>The statuses that carry it:</p>\n<table><tr><th>Status</th><th>When</th></tr>\n"
            for (status, text) in rows.sorted(by: { $0.status < $1.status }) {
                html += "<tr><td>\(Self.statusBadge(status))</td><td>\(Self.prose(text))</td></tr>\n"
            }
            html += "</table>\n"
        }
        return html + "</section>\n"
    }

    /// The base URL of the curl commands: the document's first server.
    var server: String {
        let url = document["servers"]?.sequence?.first?["url"]?.string ?? "http://localhost"
        return url.hasSuffix("/") ? String(url.dropLast()) : url
    }

    // MARK: - Text

    /// `text` with `&`, `<`, `>` and quotes escaped, for an element or an attribute.
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// A description, escaped, with its `code spans` (the little Markdown the document uses) as code.
    static func prose(_ text: String) -> String {
        let parts = escape(text).split(separator: "`", omittingEmptySubsequences: false)
        guard parts.count % 2 == 1 else { return escape(text) }
        return parts.enumerated().map { $0.offset % 2 == 1 ? "<code>\($0.element)</code>" : String($0.element) }
            .joined()
    }

    /// `text` as an HTML id: letters, digits, `-` and `_`, everything else as `-`.
    static func anchor(_ text: String) -> String {
        String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") ? $0 : "-" })
    }

    /// An HTTP method, as a coloured label.
    static func methodBadge(_ method: String) -> String {
        "<span class=\"method \(escape(method))\">\(escape(method.uppercased()))</span>"
    }

    /// A response status, coloured by its class (2xx, 4xx, 5xx).
    static func statusBadge(_ status: String) -> String {
        "<span class=\"status s\(escape(String(status.prefix(1))))\">\(escape(status))</span>"
    }

    /// A JSON example in a `<details>` block, shown open or folded.
    static func exampleBlock(_ example: Node, open: Bool) -> String {
        "<details\(open ? " open" : "")><summary>Example</summary><pre class=\"json\">"
            + escape(json(example, pretty: true)) + "</pre></details>\n"
    }

    /// The page's whole style: system fonts, readable widths, no web fonts or images.
    static let style = """
        body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:70rem;margin:0 auto;\
        padding:1rem 1.5rem 4rem;line-height:1.5;color:#1d2330;background:#fff}
        h1 small{font-size:.55em;color:#667;font-weight:normal}
        h2.tag{margin-top:2.5rem;padding-bottom:.2rem;border-bottom:2px solid #dde;text-transform:capitalize}
        h3{margin:.2rem 0 .4rem;font-size:1.15rem}h4{margin:1rem 0 .3rem;font-size:1rem;color:#334}
        nav ul{list-style:none;padding-left:1rem;margin:.2rem 0}nav li{margin:.15rem 0}
        nav>ul>li>a{font-weight:600}nav a.tag{text-transform:capitalize}
        section{border:1px solid #d5d9e3;border-radius:8px;margin:1.2rem 0;padding:.6rem 1.2rem 1rem}
        section.general{background:#f8f9fc}
        a{color:#1a56b8;text-decoration:none}a:hover{text-decoration:underline}
        code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em;background:#f0f2f7;\
        padding:0 .25em;border-radius:3px}
        .method{display:inline-block;min-width:4.2em;text-align:center;font:bold .8rem ui-monospace,monospace;\
        color:#fff;border-radius:4px;padding:.1em .4em;margin-right:.3em;vertical-align:middle}
        .get{background:#2f6fdf}.post{background:#1f9d55}.put{background:#c77c02}.delete{background:#c53030}\
        .patch{background:#7048e8}.head,.options,.trace{background:#667}
        .status{display:inline-block;font:bold .85rem ui-monospace,monospace;border-radius:4px;padding:0 .35em;\
        margin-right:.4em}.s2,.s3{background:#dcf2e3;color:#14532d}.s4{background:#fde8d7;color:#7c2d12}\
        .s5{background:#fbd5d5;color:#7f1d1d}.sd{background:#e5e7eb}
        .summary{font-size:1.05rem;margin:.2rem 0}
        .access{background:#eef3fd;border-left:4px solid #2f6fdf;padding:.3rem .6rem;margin:.5rem 0}
        .access.open{background:#eefaf2;border-left-color:#1f9d55}
        .role{background:#dfe7fb}
        table{border-collapse:collapse;margin:.3rem 0 .6rem;width:100%;font-size:.92rem}
        th,td{border:1px solid #dde1ea;padding:.25rem .5rem;text-align:left;vertical-align:top}
        th{background:#f0f2f7}tr:nth-child(even) td{background:#fafbfd}
        td.name{white-space:nowrap}table.fields td:last-child{min-width:16rem}.note{display:block;color:#556;font-size:.85em}
        .required{color:#b42318;font-weight:600}.always{color:#1d2330;font-weight:600}.optional{color:#778}
        pre{background:#1e2430;color:#e6e9ef;padding:.6rem .8rem;border-radius:6px;overflow-x:auto;\
        font-size:.85rem;line-height:1.4}
        pre code,pre .json{background:none;padding:0}
        details{margin:.3rem 0}summary{cursor:pointer;color:#334;font-weight:600}
        .response{margin:.5rem 0 .8rem}.media{color:#556;font-size:.85em;margin-left:.4em}
        ul.errors{padding-left:1.2rem;margin:.2rem 0}ul.errors li{margin:.15rem 0}
        """
}
