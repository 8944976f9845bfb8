import Bus
public import Foundation
public import NIOCore

/// A change to a JSON context, applied by the bus all or nothing.
public enum ContextPatch: Sendable {
    /// An RFC 7396 JSON Merge Patch: an object whose members replace those of the context, and
    /// whose `null` members remove them.
    case merge(ByteBuffer)
    /// An RFC 6902 JSON Patch: an array of operations (`add`, `remove`, `replace`, `move`, `copy`,
    /// `test`).
    case json(ByteBuffer)

    /// A merge patch from its JSON text.
    public static func merge(text: String) -> ContextPatch { .merge(ByteBuffer(string: text)) }

    /// A JSON Patch from its JSON text.
    public static func json(text: String) -> ContextPatch { .json(ByteBuffer(string: text)) }

    /// A merge patch that sets the members `value` encodes to. (A nil optional is left out by
    /// `JSONEncoder`, not sent as `null`: this cannot remove members.)
    public static func merge(encoding value: some Encodable, encoder: JSONEncoder = JSONEncoder()) throws
        -> ContextPatch
    {
        .merge(try ACBClient.json(value, encoder))
    }

    var operation: ContextOperation {
        switch self {
        case .merge: .mergePatch
        case .json: .jsonPatch
        }
    }

    var document: ByteBuffer {
        switch self {
        case .merge(let document), .json(let document): document
        }
    }
}
