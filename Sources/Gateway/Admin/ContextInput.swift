import Bus
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The body of POST /contexts (with `id`) and PUT /contexts/{id} (without): the context's body and
/// any of its attributes.
struct ContextInput: AdminInput {
    var id: String?
    var kind: String?
    var contentType: String?
    /// Its bytes are taken from the request as they are (``JSONMember``); decoded only to keep a
    /// string (a bytes context's base64).
    var body: Present?
    var label: String?
    var scope: String?
    var readers: [String]?
    var writers: [String]?
    var metadata: [String: String]?
    var ttlMs: UInt64?
    var parents: [Parent]?
    var source: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, kind, contentType = "content_type", body, label, scope, readers, writers, metadata
        case ttlMs = "ttl_ms", parents, source
    }

    /// A json context's body may be `null`, a JSON value like any other.
    static var nullable: Set<String> { ["body"] }

    /// Any JSON value, not decoded here; kept when it is a string.
    struct Present: Decodable {
        var string: String?

        init(from decoder: any Decoder) throws {
            string = try? decoder.singleValueContainer().decode(String.self)
        }
    }

    /// One of `parents`: a context id and the version used. Any other key is refused.
    struct Parent: Decodable {
        var id: String
        var version: UInt64

        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, version
        }

        init(from decoder: any Decoder) throws {
            let all = try decoder.container(keyedBy: AnyKey.self)
            if let unknown = all.allKeys.first(where: { CodingKeys(stringValue: $0.stringValue) == nil }) {
                let context = DecodingError.Context(
                    codingPath: all.codingPath + [unknown], debugDescription: "unknown field \(unknown.stringValue)")
                throw DecodingError.dataCorrupted(context)
            }
            let container = try decoder.container(keyedBy: CodingKeys.self)
            id = try container.decode(String.self, forKey: .id)
            version = try container.decode(UInt64.self, forKey: .version)
        }
    }

    /// Any key, to find the unknown ones.
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The content type named, application/json if none (the body's type follows from the request
    /// alone, whatever the context held). - Throws: `invalid_argument` for another.
    func contentTypeValue() throws(AdminError) -> ContentType {
        guard let contentType else { return .json }
        guard let type = ContentType(mime: contentType) else {
            throw AdminError(
                .invalidArgument,
                "content_type is application/json, application/octet-stream or application/vnd.acb.sealed",
                field: "content_type")
        }
        return type
    }

    /// `base` with the attributes this body sets, checked as the wire checks them (the bus checks
    /// again, and what it alone knows).
    func attributes(over base: ContextAttributes) throws(AdminError) -> ContextAttributes {
        var attributes = base
        if let kind {
            if !kind.isEmpty { _ = try AdminCheck.identifier(kind, field: "kind") }
            attributes.kind = kind
        }
        attributes.contentType = try contentTypeValue()
        if let label { attributes.label = try Self.ascii(label, field: "label") }
        if let scope {
            guard let value = ContextScope(name: scope) else {
                throw AdminError(.invalidArgument, "scope is private, group, shared or tenant", field: "scope")
            }
            attributes.scope = value
        }
        if let readers { attributes.readers = try Self.agents(readers, field: "readers") }
        if let writers { attributes.writers = try Self.agents(writers, field: "writers") }
        if let metadata {
            guard metadata.count <= Limits.maxListCount else {
                throw AdminError(.invalidArgument, "at most \(Limits.maxListCount) entries", field: "metadata")
            }
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                _ = try AdminCheck.identifier(key, field: "metadata")
                // 256 characters are at most 1,024 bytes, the wire's bound on a metadata value.
                try AdminCheck.text(value, field: "metadata.\(key)", maxCharacters: 256)
                guard !value.utf8.contains(0) else {
                    throw AdminError(.invalidArgument, "may not contain NUL", field: "metadata.\(key)")
                }
            }
            attributes.metadata = metadata.sorted { $0.key < $1.key }.map {
                MetadataEntry(key: $0.key, value: $0.value)
            }
        }
        if let parents {
            guard parents.count <= Limits.maxListCount else {
                throw AdminError(.invalidArgument, "at most \(Limits.maxListCount) parents", field: "parents")
            }
            var links: [ContextParent] = []
            for (index, parent) in parents.enumerated() {
                guard AdminAPI.versions.contains(parent.version) else {
                    throw AdminError(
                        .invalidArgument, "a version is from 1 to \(Int64.max)", field: "parents.\(index).version")
                }
                let id = try AdminCheck.identifier(parent.id, field: "parents.\(index).id")
                links.append(ContextParent(id: id, version: parent.version))
            }
            attributes.parents = links
        }
        if let source { attributes.source = try Self.ascii(source, field: "source") }
        return attributes
    }

    /// `text` if it is at most 128 characters of printable ASCII (space included): the wire takes
    /// 128 bytes, and a bound in characters that is also one in bytes keeps the API's document exact.
    private static func ascii(_ text: String, field: String) throws(AdminError) -> String {
        guard text.utf8.count <= Limits.maxIdentifierBytes, text.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw AdminError(
                .invalidArgument, "at most \(Limits.maxIdentifierBytes) characters of printable ASCII", field: field)
        }
        return text
    }

    /// The expiry asked for, within the wire's bound; 0 when absent.
    func ttl() throws(AdminError) -> UInt64 {
        let ttl = ttlMs ?? 0
        guard ttl <= Limits.maxContextTTLMs else {
            throw AdminError(.invalidArgument, "ttl_ms is at most \(Limits.maxContextTTLMs) (30 days)", field: "ttl_ms")
        }
        return ttl
    }

    /// The new body for a context of `type`: a json context's as the request wrote it (`null`
    /// included), a bytes context's decoded from base64. `request` is the whole request body.
    func bodyBytes(for type: ContentType, in request: Data) throws(AdminError) -> ByteBuffer {
        switch type {
        case .json:
            guard let value = JSONMember.value("body", in: Array(request)) else {
                throw AdminError(.invalidArgument, "missing field", field: "body")
            }
            return ByteBuffer(bytes: value)
        case .bytes, .sealed:
            guard let text = body?.string, let bytes = Data(base64Encoded: text) else {
                throw AdminError(.invalidArgument, "a \(type.mime) body is a base64 string", field: "body")
            }
            return ByteBuffer(bytes: bytes)
        }
    }

    private static func agents(_ ids: [String], field: String) throws(AdminError) -> [String] {
        guard ids.count <= Limits.maxListCount else {
            throw AdminError(.invalidArgument, "at most \(Limits.maxListCount) agents", field: field)
        }
        for (index, id) in ids.enumerated() { _ = try AdminCheck.identifier(id, field: "\(field).\(index)") }
        return ids
    }
}

/// The body of POST /contexts/{id}/touch.
struct TouchInput: AdminInput {
    var ttlMs: UInt64

    enum CodingKeys: String, CodingKey, CaseIterable {
        case ttlMs = "ttl_ms"
    }
}

/// The version a write expects to replace: from `If-Match: "<version>"` (or `*`: any, but the
/// context must exist) or the `expected_version` query parameter.
enum ContextPrecondition: Equatable {
    /// Neither: no check.
    case unchecked
    /// `If-Match: *`.
    case exists
    case version(UInt64)
    /// `If-Match` and `expected_version` name two versions: the context cannot be at both, so the
    /// write fails with `version_conflict`, as a check that does not hold does.
    case conflicting

    /// What `request` and its `query` ask for. Both may be given; `*` with a version is that
    /// version. - Throws: `invalid_argument` for a malformed `expected_version`.
    init(_ request: Request, _ query: Query) throws(AdminError) {
        let header = request.headers[.ifMatch].map(Self.ifMatch)
        let parameter = try query.integer("expected_version", in: AdminAPI.versions).map(Self.version)
        switch (header, parameter) {
        case (nil, nil): self = .unchecked
        case (let one?, nil), (nil, let one?), (.exists?, let one?): self = one
        case (let header?, let parameter?): self = header == parameter ? header : .conflicting
        }
    }

    /// The value of an `If-Match` header. An entity tag that is no version in quotes matches no
    /// version (RFC 9110 §13.1.1: the condition is false), so the write fails with `version_conflict`.
    private static func ifMatch(_ text: String) -> ContextPrecondition {
        let value = text.trimmingCharacters(in: .whitespaces)
        if value == "*" { return .exists }
        guard value.count >= 3, value.hasPrefix("\""), value.hasSuffix("\""),
            let version = UInt64(value.dropFirst().dropLast()), version > 0
        else { return .conflicting }
        return .version(version)
    }

    /// The `expected_version` of the CONTEXT_WRITE: 0 for no check; for ``conflicting`` a version no
    /// context reaches, which the bus refuses with `version_conflict` and the current version (or
    /// with `unknown_context` when there is no live context, as any check).
    var expectedVersion: UInt64 {
        switch self {
        case .unchecked, .exists: 0
        case .version(let version): version
        case .conflicting: .max
        }
    }
}
