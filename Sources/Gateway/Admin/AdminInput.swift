import Bus
import Foundation
import Hummingbird

/// A JSON request body: its keys are its coding keys, and any other key is refused.
protocol AdminInput: Decodable {
    associatedtype CodingKeys: CodingKey & CaseIterable
    /// The keys that may be `null` (a value of their own, such as a JSON context's body); any other
    /// key is left out rather than null.
    static var nullable: Set<String> { get }
}

extension AdminInput {
    static var nullable: Set<String> { [] }
}

extension Request {
    /// The body decoded as `T`. Malformed JSON, a non-object, unknown or missing fields, wrong types
    /// and bodies over the context's limit are `invalid_argument` (or `too_large`) naming the field.
    func input<T: AdminInput>(_ type: T.Type, context: AdminContext) async throws(AdminError) -> T {
        try Self.decode(type, from: try await collectedBody(context: context))
    }

    /// The whole body, at most the context's limit (`too_large` past it).
    func collectedBody(context: AdminContext) async throws(AdminError) -> Data {
        var request = self
        do {
            return Data(try await request.collectBody(upTo: context.maxUploadSize).readableBytesView)
        } catch {
            throw AdminError(.tooLarge, "the body exceeds \(context.maxUploadSize) bytes", field: "body")
        }
    }

    /// `data` decoded as `T`, refused as ``input(_:context:)`` describes.
    static func decode<T: AdminInput>(_: T.Type, from data: Data) throws(AdminError) -> T {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw AdminError(.invalidArgument, "the body must be a JSON object", field: "body")
        }
        let known = Set(T.CodingKeys.allCases.map(\.stringValue))
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw AdminError(.invalidArgument, "unknown field \(unknown)", field: unknown)
        }
        // Absent and null differ: an optional field is left out, never null.
        if let null = object.keys.sorted().first(where: { object[$0] is NSNull && !T.nullable.contains($0) }) {
            throw AdminError(.invalidArgument, "must not be null (leave it out instead)", field: null)
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw AdminError(.invalidArgument, "missing field", field: Self.path(context.codingPath + [key]))
        } catch let DecodingError.typeMismatch(type, context) {
            throw AdminError(.invalidArgument, "must be of type \(type)", field: Self.path(context.codingPath))
        } catch let DecodingError.valueNotFound(type, context) {
            throw AdminError(.invalidArgument, "must be a \(type), not null", field: Self.path(context.codingPath))
        } catch let DecodingError.dataCorrupted(context) {
            throw AdminError(.invalidArgument, context.debugDescription, field: Self.path(context.codingPath))
        } catch {
            throw AdminError(.invalidArgument, "\(error)", field: "body")
        }
    }

    /// The query parameters, refusing any not in `allowed`, and any given twice but those in
    /// `repeatable` (read with ``Query/list(_:)``).
    func query(allowing allowed: Set<String>, repeatable: Set<String> = []) throws(AdminError) -> Query {
        var values: [String: String] = [:]
        var lists: [String: [String]] = [:]
        for (name, value) in uri.queryParameters {
            let name = String(name)
            guard allowed.contains(name) || repeatable.contains(name) else {
                throw AdminError(.invalidArgument, "unknown query parameter \(name)", field: name)
            }
            guard !repeatable.contains(name) else {
                lists[name, default: []].append(String(value))
                continue
            }
            guard values[name] == nil else {
                throw AdminError(.invalidArgument, "\(name) given twice", field: name)
            }
            values[name] = String(value)
        }
        return Query(values: values, lists: lists)
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "\($0)" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// A request's query parameters, each read and checked by name.
struct Query {
    let values: [String: String]
    /// The parameters that may be given more than once, in the order given.
    var lists: [String: [String]] = [:]

    /// A text parameter, nil when absent.
    func string(_ name: String) -> String? { values[name] }

    /// Every value of a repeatable parameter, in the order given; empty when absent.
    func list(_ name: String) -> [String] { lists[name] ?? [] }

    /// An identifier parameter (a tenant, an agent id, a type), checked as the wire checks them.
    func identifier(_ name: String) throws(AdminError) -> String? {
        guard let value = values[name] else { return nil }
        return try AdminCheck.identifier(value, field: name)
    }

    /// Page size: 1...`maximum`, `standard` when absent.
    func limit(standard: Int = 50, maximum: Int = Limits.maxListCount) throws(AdminError) -> Int {
        guard let text = values["limit"] else { return standard }
        guard let limit = Int(text), (1...maximum).contains(limit) else {
            throw AdminError(.invalidArgument, "limit must be an integer from 1 to \(maximum)", field: "limit")
        }
        return limit
    }

    /// An integer parameter within `range`, nil when absent.
    func integer(_ name: String, in range: ClosedRange<UInt64>) throws(AdminError) -> UInt64? {
        guard let text = values[name] else { return nil }
        guard let value = UInt64(text), range.contains(value) else {
            throw AdminError(
                .invalidArgument, "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)",
                field: name)
        }
        return value
    }

    /// A numeric cursor (an id from a previous page's `next_cursor`); 0 when absent.
    func numericCursor() throws(AdminError) -> UInt64 {
        guard let text = values["cursor"] else { return 0 }
        return try AdminCheck.id(text, field: "cursor")
    }
}

/// Checks of input values that name the field at fault.
enum AdminCheck {
    /// `value` if it is a valid identifier (docs/protocol.md §2.5).
    static func identifier(_ value: String, field: String) throws(AdminError) -> String {
        do {
            try Identifier.validate(value, field: field)
        } catch {
            throw AdminError(error, field: field)
        }
        return value
    }

    /// Requires `text` to be at most `maxCharacters` Unicode code points (as JSON Schema's
    /// `maxLength` counts), which keeps it within the wire's byte limits.
    static func text(_ text: String, field: String, maxCharacters: Int) throws(AdminError) {
        guard text.unicodeScalars.count <= maxCharacters else {
            throw AdminError(.invalidArgument, "at most \(maxCharacters) characters", field: field)
        }
    }

    /// A path parameter that must be there (the router matched it), percent-decoded (RFC 3986):
    /// identifiers may hold `#`, `%` and `?`, which a path carries only encoded.
    static func parameter(_ name: String, _ context: AdminContext) throws(AdminError) -> String {
        guard let decoded = percentDecoded(context.parameters.get(name) ?? "") else {
            throw AdminError(.invalidArgument, "not valid percent-encoding", field: name)
        }
        return try identifier(decoded, field: name)
    }

    /// `text` with every `%XX` decoded; nil when a `%` is not followed by two hex digits or the
    /// bytes are not UTF-8 (Foundation's `removingPercentEncoding` lets such a `%` through).
    static func percentDecoded(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var rest = text.utf8[...]
        while let byte = rest.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            let digits = rest.prefix(2)
            guard digits.count == 2, digits.allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                let value = UInt8(String(decoding: digits, as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
            rest = rest.dropFirst(2)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// An optional identifier of a body.
    static func optionalIdentifier(_ value: String?, field: String) throws(AdminError) -> String? {
        guard let value else { return nil }
        return try identifier(value, field: field)
    }

    /// A decimal id (messages, dead letters): 1 to 19 digits, no leading zero. Ids beyond what
    /// PostgreSQL's bigint holds name nothing, so they read as its largest value, which no id reaches.
    static func id(_ text: String, field: String) throws(AdminError) -> UInt64 {
        guard (1...19).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            !text.hasPrefix("0"), let id = UInt64(text)
        else { throw AdminError(.invalidArgument, "\(field) must be a positive decimal integer", field: field) }
        return min(id, UInt64(Int64.max))
    }
}
