import Bus
import Foundation
import NIOCore

/// Contexts as the admin API writes them, in responses and in watch events: a head is a JSON
/// object (``Head``); a body or a patch is added to it as the JSON it is, byte for byte.
enum ContextJSON {
    /// Everything a ``ContextHead`` says, as JSON: the checksum in hex, metadata as an object,
    /// `expires_ms` null for no expiry, the enums by name.
    struct Head: Encodable {
        struct Parent: Encodable {
            var id: String
            var version: UInt64
        }

        var id: String
        var owner: String
        var kind: String
        var contentType: String
        var label: String
        var scope: String
        var readers: [String]
        var writers: [String]
        var metadata: [String: String]
        var parents: [Parent]
        var source: String
        var version: UInt64
        var revision: UInt64
        var checksum: String
        var size: UInt64
        var createdMs: UInt64
        var updatedMs: UInt64
        var updatedBy: String
        var expiresMs: Nullable<UInt64>
        var state: String

        init(_ head: ContextHead) {
            let attributes = head.attributes
            id = head.id
            owner = head.owner
            kind = attributes.kind
            contentType = attributes.contentType.mime
            label = attributes.label
            scope = attributes.scope.name
            readers = attributes.readers
            writers = attributes.writers
            metadata = Dictionary(attributes.metadata.map { ($0.key, $0.value) }) { _, last in last }
            parents = attributes.parents.map { Parent(id: $0.id, version: $0.version) }
            source = attributes.source
            version = head.version
            revision = head.revision
            checksum = head.checksumHex
            size = head.size
            createdMs = head.createdMs
            updatedMs = head.updatedMs
            updatedBy = head.updatedBy
            expiresMs = Nullable(head.expiresMs == 0 ? nil : head.expiresMs)
            state =
                switch head.state {
                case .live: "live"
                case .deleted: "deleted"
                case .expired: "expired"
                }
        }
    }

    /// An optional written as JSON `null` when absent (synthesized `Encodable` would leave it out).
    struct Nullable<Wrapped: Encodable>: Encodable {
        var value: Wrapped?

        init(_ value: Wrapped?) { self.value = value }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            if let value { try container.encode(value) } else { try container.encodeNil() }
        }
    }

    /// GET /contexts: one page of heads, and the cursor of the next (absent on the last page).
    struct ListPage: Encodable {
        var contexts: [Head]
        var nextCursor: String?
    }

    /// GET /contexts/{id}/history: the kept versions, newest first.
    struct History: Encodable {
        var versions: [Head]
    }

    /// GET /contexts/{id}/lineage: the related contexts, nearest first.
    struct Lineage: Encodable {
        var contexts: [Head]
    }

    /// `head` as a JSON object, with the member `key` set to the JSON text `value` when given.
    static func object(_ head: ContextHead, adding key: String? = nil, _ value: ByteBuffer? = nil) -> ByteBuffer {
        var data = AdminJSON.data(Head(head))
        guard let key, let value, data.last == UInt8(ascii: "}") else { return ByteBuffer(bytes: data) }
        // The head is never an empty object, so a comma always separates the member from the others.
        data.removeLast()
        var object = ByteBuffer(bytes: data)
        object.writeString(",\"\(key)\":")
        object.writeImmutableBuffer(value)
        object.writeString("}")
        return object
    }

    /// A body as a JSON value: a json context's as it is kept (one JSON value), a bytes or sealed
    /// context's as a base64 string.
    static func body(_ body: ByteBuffer, of type: ContentType) -> ByteBuffer {
        // A tombstone's body is empty: no JSON value, so null.
        guard type != .json else { return body.readableBytes == 0 ? ByteBuffer(string: "null") : body }
        return ByteBuffer(string: "\"" + Data(body.readableBytesView).base64EncodedString() + "\"")
    }

    /// A version with its body: the head and `body`, as GET answers.
    static func withBody(_ head: ContextHead, _ body: ByteBuffer) -> ByteBuffer {
        object(head, adding: "body", Self.body(body, of: head.attributes.contentType))
    }

    /// What a watch event says: the head, and `body` or `patch` when the event carries one.
    static func event(_ event: ContextEvent) -> ByteBuffer {
        switch event.payloadKind {
        case .none: object(event.head)
        case .body: withBody(event.head, event.payload)
        case .patch: object(event.head, adding: "patch", event.payload)
        }
    }

    /// The `ETag` of a version: its number in quotes, what `If-Match` takes back.
    static func eTag(_ head: ContextHead) -> String { "\"\(head.version)\"" }
}
