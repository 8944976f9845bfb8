import Yams

/// Schemas as a reader needs them: a body's fields as a table, nested objects and arrays of
/// objects flattened into paths (`items[].agent_id`, `messages.queued`), and a type in words with
/// its constraints (`array of string`, `string (date-time)`, "1 to 256").
extension APIPage {
    /// One row of a fields table: a property, named by its path from the top of the body.
    struct Field {
        let name: String
        let schema: Node
        let required: Bool
        /// Its schema contains itself: shown once, not expanded again.
        let recursive: Bool
    }

    /// A body's schema: its description, then its fields as a table, or its type in words when it
    /// has none (a string, an array of scalars).
    func schemaBlock(_ schema: Node, request: Bool) -> String {
        guard let content = resolved(schema) else { return "<p>(a reference that points nowhere)</p>\n" }
        var html = ""
        if let text = summary(of: schema) { html += "<p>\(Self.prose(text))</p>\n" }
        let rows = fields(of: schema)
        if !rows.isEmpty {
            return html + fieldTable(rows, request: request, choices: choices(of: content))
        }
        if Self.type(of: content) == "array", let items = content["items"],
            case let rows = fields(of: items, prefix: "[]."),
            !rows.isEmpty
        {
            html += "<p>An array of objects:</p>\n"
            return html + fieldTable(rows, request: request, choices: resolved(items).map(choices) ?? [:])
        }
        return html + "<p>Type: \(typeCell(schema))</p>\n"
    }

    /// The fields of `schema` and of the objects nested in it, depth first, in the order they are
    /// written; empty when it is no object with properties. `visiting` holds the references
    /// already being expanded, so a schema that contains itself stops there.
    func fields(of schema: Node, prefix: String = "", depth: Int = 0, visiting: Set<String> = []) -> [Field] {
        guard depth < Self.maxDepth, let object = resolved(schema) else { return [] }
        let members = (object["allOf"]?.sequence ?? []).flatMap { references(of: $0) }
        let visiting = visiting.union(references(of: schema)).union(members)
        let required = requiredNames(of: object)
        var fields: [Field] = []
        for (name, property) in properties(of: object) {
            let path = prefix + name
            let recursive = references(of: property).contains(where: visiting.contains)
            fields.append(Field(name: path, schema: property, required: required.contains(name), recursive: recursive))
            guard !recursive, let content = resolved(property) else { continue }
            if !properties(of: content).isEmpty {
                fields += self.fields(of: property, prefix: path + ".", depth: depth + 1, visiting: visiting)
            } else if Self.type(of: content) == "array", let items = content["items"] {
                let inner = visiting.union(references(of: property))
                guard !references(of: items).contains(where: inner.contains) else { continue }
                fields += self.fields(of: items, prefix: path + "[].", depth: depth + 1, visiting: inner)
            }
        }
        return fields
    }

    /// The properties of an object schema, its `allOf` members' included, in the order written.
    func properties(of object: Node) -> [(name: String, schema: Node)] {
        var all = (object["properties"]?.mapping ?? [:]).compactMap { key, value in key.string.map { ($0, value) } }
        for member in object["allOf"]?.sequence ?? [] {
            if let member = resolved(member) { all += properties(of: member) }
        }
        return all
    }

    /// The names an object schema requires, its `allOf` members' included.
    func requiredNames(of object: Node) -> Set<String> {
        var names = Set((object["required"]?.sequence ?? []).compactMap(\.string))
        for member in object["allOf"]?.sequence ?? [] {
            if let member = resolved(member) { names.formUnion(requiredNames(of: member)) }
        }
        return names
    }

    /// For each property a `oneOf` or `anyOf` of required lists makes required, what the choice
    /// says: "exactly one of `payload`, `payload_base64`".
    func choices(of object: Node) -> [String: String] {
        var choices: [String: String] = [:]
        for (keyword, words) in [("oneOf", "exactly one of"), ("anyOf", "at least one of")] {
            let alternatives = (object[keyword]?.sequence ?? []).compactMap(resolved)
            guard !alternatives.isEmpty, alternatives.allSatisfy({ $0["properties"] == nil }) else { continue }
            let names = alternatives.flatMap { ($0["required"]?.sequence ?? []).compactMap(\.string) }
            let text = words + " " + names.map { "`\($0)`" }.joined(separator: ", ")
            for name in names { choices[name] = text }
        }
        return choices
    }

    /// The fields as a table: path, type, whether required (in a request) or always present (in a
    /// response), description.
    func fieldTable(_ fields: [Field], request: Bool, choices: [String: String] = [:]) -> String {
        var html = "<table class=\"fields\"><tr><th>Field</th><th>Type</th>"
        html += "<th>\(request ? "Required" : "Present")</th><th>Description</th></tr>\n"
        for field in fields {
            var mark = Self.requiredMark(field.required, request: request)
            if let choice = choices[field.name] { mark = "<span class=\"required\">\(Self.prose(choice))</span>" }
            var description = Self.prose(summary(of: field.schema) ?? "")
            if field.recursive { description += "<span class=\"note\">The same shape as an enclosing field.</span>" }
            html +=
                "<tr><td class=\"name\"><code>\(Self.escape(field.name))</code></td><td>\(typeCell(field.schema))</td>"
            html += "<td>\(mark)</td><td>\(description)</td></tr>\n"
        }
        return html + "</table>\n"
    }

    /// The required column's word: required or optional in a request, always or optional in a response.
    static func requiredMark(_ required: Bool, request: Bool) -> String {
        required
            ? (request ? "<span class=\"required\">required</span>" : "<span class=\"always\">always</span>")
            : "<span class=\"optional\">optional</span>"
    }

    /// A schema's description: its own (beside a `$ref`), else the one of what it refers to.
    func summary(of schema: Node) -> String? {
        schema["description"]?.string ?? resolved(schema)?["description"]?.string
    }

    /// A type cell: the type in words, its constraints below.
    func typeCell(_ schema: Node) -> String {
        let (type, notes) = describe(schema)
        return Self.escape(type) + notes.map { "<span class=\"note\">\(Self.prose($0))</span>" }.joined()
    }

    /// The type of a schema: its `type` (the first but `null` of a list), else what its keywords imply.
    static func type(of schema: Node) -> String? {
        if let type = schema["type"]?.string { return type }
        if let types = schema["type"]?.sequence { return types.compactMap(\.string).first { $0 != "null" } }
        if schema["properties"] != nil || schema["additionalProperties"] != nil { return "object" }
        return schema["items"] != nil ? "array" : nil
    }

    /// What a schema holds, in words: its type (`array of string`, `map of string to string`,
    /// `string (date-time)`, `integer or null`) and its constraints (values, bounds, pattern).
    func describe(_ schema: Node, depth: Int = 0) -> (type: String, notes: [String]) {
        guard let content = resolved(schema) else { return ("a reference that points nowhere", []) }
        guard depth < Self.maxDepth else { return ("…", []) }
        var notes: [String] = []
        var type = Self.type(of: content) ?? ""
        switch type {
        case "array":
            let items = content["items"].map { describe($0, depth: depth + 1) }
            let objects = content["items"].flatMap(resolved).map { !properties(of: $0).isEmpty } ?? false
            type = "array of " + (objects ? "objects" : items?.type ?? "anything")
            notes += Self.bounds(content, "minItems", "maxItems", unit: "items")
            if content["uniqueItems"]?.bool == true { notes.append("no duplicates") }
            notes += (objects ? [] : items?.notes ?? []).map { "each: " + $0 }
        case "object" where properties(of: content).isEmpty:
            if let values = content["additionalProperties"], values.mapping != nil {
                let keys = content["propertyNames"].map { describe($0, depth: depth + 1) }
                let value = describe(values, depth: depth + 1)
                type = "map of \(keys?.type ?? "string") to \(value.type)"
                notes += (content["propertyNames"].flatMap { summary(of: $0) }.map { ["keys: " + $0] } ?? [])
                notes += value.notes.map { "values: " + $0 }
            }
            notes += Self.bounds(content, "minProperties", "maxProperties", unit: "entries")
        case "string":
            if let format = content["format"]?.string { type += " (\(format))" }
            notes += Self.bounds(content, "minLength", "maxLength", unit: "characters")
            if let pattern = content["pattern"]?.string { notes.append("pattern `\(pattern)`") }
        case "integer", "number":
            if let format = content["format"]?.string { type += " (\(format))" }
            notes += Self.bounds(content, "minimum", "maximum", unit: "")
            if let limit = content["exclusiveMinimum"]?.string { notes.append("more than \(limit)") }
            if let limit = content["exclusiveMaximum"]?.string { notes.append("less than \(limit)") }
        case "" where !properties(of: content).isEmpty:
            type = "object"
        case "":
            let alternatives = (content["oneOf"] ?? content["anyOf"])?.sequence ?? []
            type =
                alternatives.isEmpty
                ? "any" : alternatives.map { describe($0, depth: depth + 1).type }.joined(separator: " or ")
        default:
            break
        }
        if content["type"]?.sequence?.contains(where: { $0.string == "null" }) == true { type += " or null" }
        if let values = content["enum"]?.sequence {
            let listed = values.map { "`\(Self.plain($0))`" }
            notes.insert(listed.count == 1 ? "always \(listed[0])" : "one of " + listed.joined(separator: ", "), at: 0)
        }
        if let value = content["const"] { notes.insert("always `\(Self.plain(value))`", at: 0) }
        if let value = content["default"] { notes.append("default `\(Self.plain(value))`") }
        return (type, notes)
    }

    /// "1 to 256 items", "at most 64 characters", "at least 0": the bounds `low` and `high` of a schema.
    static func bounds(_ schema: Node, _ low: String, _ high: String, unit: String) -> [String] {
        let suffix = unit.isEmpty ? "" : " " + unit
        switch (schema[low]?.string, schema[high]?.string) {
        case (let low?, let high?): return ["\(low) to \(high)\(suffix)"]
        case (let low?, nil): return ["at least \(low)\(suffix)"]
        case (nil, let high?): return ["at most \(high)\(suffix)"]
        case (nil, nil): return []
        }
    }
}
