import Foundation
import Yams

/// Examples of bodies: the document's own where it gives one, else one made from the schema as
/// Swagger UI makes them, and their JSON text.
extension APIPage {
    /// The example of a media type: its `example`, the first of its `examples`, else one made from
    /// its schema.
    func example(of media: Node) -> Node? {
        if let example = media["example"] { return example }
        if let first = media["examples"]?.mapping?.first, let value = resolved(first.value)?["value"] { return value }
        return media["schema"].flatMap { example(for: $0) }
    }

    /// An example value for `schema`: its own `example` or first `examples`, its `const`, `default`
    /// or first `enum` value; else one made from its type: `"string"` (or a value of its format),
    /// its minimum or 0, `true`, one item, and every property but those a `oneOf` or `anyOf`
    /// leaves to another choice than the first. `visiting` holds the references being expanded:
    /// a schema met again inside itself is left out (nil), so the example stays finite and small.
    func example(for schema: Node, visiting: Set<String> = []) -> Node? {
        if let own = schema["example"] ?? schema["examples"]?.sequence?.first { return own }
        let chain = references(of: schema)
        guard visiting.count < Self.maxDepth, !chain.contains(where: visiting.contains),
            let content = resolved(schema)
        else { return nil }
        if let given = content["example"] ?? content["examples"]?.sequence?.first ?? content["const"]
            ?? content["default"] ?? content["enum"]?.sequence?.first
        {
            return given
        }
        let visiting = visiting.union(chain)
        let alternatives = (content["oneOf"] ?? content["anyOf"])?.sequence ?? []
        if let members = content["allOf"]?.sequence, content["properties"] == nil, Self.type(of: content) == nil {
            // The members' examples together, when they are objects (else the first member's).
            let parts = members.compactMap { example(for: $0, visiting: visiting) }
            let pairs = parts.compactMap(\.mapping).flatMap { Array($0) }
            return pairs.isEmpty ? parts.first : Node(pairs.map { ($0.key, $0.value) })
        }
        if let first = alternatives.first, properties(of: content).isEmpty {
            return example(for: first, visiting: visiting)
        }
        switch Self.type(of: content) {
        case "object":
            let later = alternatives.dropFirst().flatMap { ($0["required"]?.sequence ?? []).compactMap(\.string) }
            let chosen = Set((alternatives.first?["required"]?.sequence ?? []).compactMap(\.string))
            var pairs: [(Node, Node)] = []
            for (name, property) in properties(of: content) where chosen.contains(name) || !later.contains(name) {
                if let value = example(for: property, visiting: visiting) {
                    pairs.append((Node(name, Tag(.str)), value))
                }
            }
            if pairs.isEmpty, let values = content["additionalProperties"], values.mapping != nil,
                let value = example(for: values, visiting: visiting)
            {
                pairs.append((Node("key", Tag(.str)), value))
            }
            return Node(pairs)
        case "array":
            return Node(content["items"].flatMap { example(for: $0, visiting: visiting) }.map { [$0] } ?? [])
        case "integer":
            return Node(content["minimum"]?.int.map(String.init) ?? "0", Tag(.int))
        case "number":
            return Node(content["minimum"]?.string ?? "0", Tag(.float))
        case "boolean":
            return Node("true", Tag(.bool))
        case "null":
            return Node("null", Tag(.null))
        default:
            return Node(Self.formatExamples[content["format"]?.string ?? ""] ?? "string", Tag(.str))
        }
    }

    /// A value of each string format a made-up example may need.
    static let formatExamples = [
        "date-time": "2026-01-01T12:00:00Z", "date": "2026-01-01", "time": "12:00:00Z", "byte": "aGVsbG8=",
        "email": "user@example.com", "uri": "https://example.com/", "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "ipv4": "127.0.0.1", "ipv6": "::1", "hostname": "example.com",
    ]

    /// Whether a media type is JSON (`application/json`, `application/problem+json`), which the
    /// examples are written in.
    static func isJSON(_ mediaType: String) -> Bool {
        let type = mediaType.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        return type == "application/json" || type.hasSuffix("+json")
    }

    /// A scalar as plain text (a string without quotes); anything else as JSON on one line.
    static func plain(_ value: Node) -> String {
        if case .scalar(let scalar) = value, isString(value) { return scalar.string }
        return json(value, pretty: false)
    }

    /// `value` as JSON: indented by two spaces (`pretty`; arrays of scalars stay on one line), or
    /// all on one line. Scalars are written as their YAML type: numbers, booleans, null, else strings.
    static func json(_ value: Node, pretty: Bool, indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .mapping(let mapping):
            guard !mapping.isEmpty else { return "{}" }
            let members = mapping.map { key, value in
                quoted(key.string ?? "") + (pretty ? ": " : ":") + json(value, pretty: pretty, indent: inner)
            }
            return pretty
                ? "{\n" + members.map { inner + $0 }.joined(separator: ",\n") + "\n\(indent)}"
                : "{" + members.joined(separator: ",") + "}"
        case .sequence(let sequence):
            let items = sequence.map { json($0, pretty: pretty, indent: inner) }
            guard pretty, !items.isEmpty, !sequence.allSatisfy({ $0.scalar != nil }) else {
                return "[" + items.joined(separator: pretty ? ", " : ",") + "]"
            }
            return "[\n" + items.map { inner + $0 }.joined(separator: ",\n") + "\n\(indent)]"
        case .scalar(let scalar):
            switch Tag.Name(rawValue: value.tag.rawValue) {
            case .int: return value.int.map(String.init) ?? quoted(scalar.string)
            case .float: return value.float.flatMap(number) ?? quoted(scalar.string)
            case .bool: return value.bool.map { $0 ? "true" : "false" } ?? quoted(scalar.string)
            case .null: return "null"
            default: return quoted(scalar.string)
            }
        case .alias:
            return "null"
        }
    }

    /// A finite number as JSON: a whole one without a fraction (`0`, not `0.0`).
    private static func number(_ value: Double) -> String? {
        guard value.isFinite else { return nil }
        return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }

    /// Whether a scalar is written as a JSON string (not a number, boolean or null).
    private static func isString(_ value: Node) -> Bool {
        ![Tag.Name.int, .float, .bool, .null].contains(Tag.Name(rawValue: value.tag.rawValue))
    }

    /// `text` as a JSON string.
    static func quoted(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return (try? encoder.encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
    }
}
