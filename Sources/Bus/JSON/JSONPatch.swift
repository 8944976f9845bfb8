/// A JSON Patch (RFC 6902): operations that turn one JSON document into another, applied in order.
///
/// ``apply(to:)`` is atomic: it returns the patched document or throws, and never a half-patched one.
/// ``diff(from:to:)`` computes a patch between two documents.
public struct JSONPatch: Sendable, Hashable {
    /// One step of a patch (RFC 6902 §4).
    public enum Operation: Sendable, Hashable {
        /// Adds the value: sets an object member, inserts into an array at an index from 0 to its count (`-` is the
        /// count, so it appends), or replaces the whole document at the root. The parent must exist.
        case add(JSONPointer, JSONValue)
        /// Removes the value, which must exist; removing the whole document leaves `null`.
        case remove(JSONPointer)
        /// Replaces the value, which must exist.
        case replace(JSONPointer, JSONValue)
        /// Removes the value at `from` and adds it at `to`; `from` must not be a proper prefix of `to`.
        case move(from: JSONPointer, to: JSONPointer)
        /// Adds a copy of the value at `from` at `to`.
        case copy(from: JSONPointer, to: JSONPointer)
        /// Succeeds only if the value exists and equals the given one (JSON equality).
        case test(JSONPointer, JSONValue)
    }

    /// The operations, applied in order.
    public var operations: [Operation]

    /// A patch of these operations.
    public init(operations: [Operation]) {
        self.operations = operations
    }

    /// Parses an RFC 6902 document: a JSON array of operation objects.
    /// - Throws: ``ErrorCode/invalidJSON`` if the text is not JSON or not such an array (a member is missing or
    ///   of the wrong kind, an `op` is unknown); ``ErrorCode/invalidPointer`` if a `path` or `from` does not parse.
    public init(parsing bytes: some Collection<UInt8>) throws(BusError) {
        try self.init(json: JSONValue(parsing: bytes))
    }

    /// Reads an RFC 6902 document already parsed: an array of objects with `op`, `path` and, as the op requires,
    /// `value` or `from`. Other members are ignored.
    /// - Throws: as ``init(parsing:)``, naming the operation's index.
    public init(json: JSONValue) throws(BusError) {
        guard case .array(let elements) = json else { throw BusError(.invalidJSON, "a JSON Patch must be an array") }
        var operations: [Operation] = []
        for (index, element) in elements.enumerated() {
            do throws(BusError) {
                operations.append(try Operation(json: element))
            } catch {
                throw error.inOperation(index)
            }
        }
        self.init(operations: operations)
    }

    /// The RFC 6902 document.
    public var json: JSONValue {
        .array(operations.map(\.json))
    }

    /// The RFC 6902 document as canonical JSON text.
    public func serialized() -> [UInt8] {
        json.serialized()
    }

    /// The document with every operation applied, as RFC 6902 specifies.
    /// - Throws: ``ErrorCode/patchFailed`` naming the operation's index, if one does not apply: its path or `from`
    ///   is missing (or, for `add`, its parent), an array index is out of range, a `test` fails, or a `move` goes
    ///   into its own child. Nothing is returned then, so the caller's document is unchanged.
    /// - Complexity: each operation copies the containers along its path.
    public func apply(to document: JSONValue) throws(BusError) -> JSONValue {
        var result = document
        for (index, operation) in operations.enumerated() {
            do throws(BusError) {
                try operation.apply(to: &result)
            } catch {
                throw error.inOperation(index)
            }
        }
        return result
    }
}

extension JSONPatch.Operation {
    fileprivate init(json: JSONValue) throws(BusError) {
        guard case .object(let members) = json else { throw BusError(.invalidJSON, "not an object") }
        func member(_ name: String) throws(BusError) -> JSONValue {
            guard let value = members[name] else { throw BusError(.invalidJSON, "no \"\(name)\" member") }
            return value
        }
        func pointer(_ name: String) throws(BusError) -> JSONPointer {
            guard case .string(let text) = try member(name) else {
                throw BusError(.invalidJSON, "\"\(name)\" is not a string")
            }
            return try JSONPointer(text)
        }
        guard case .string(let op) = try member("op") else { throw BusError(.invalidJSON, "\"op\" is not a string") }
        switch op {
        case "add": self = try .add(pointer("path"), member("value"))
        case "remove": self = try .remove(pointer("path"))
        case "replace": self = try .replace(pointer("path"), member("value"))
        case "move": self = try .move(from: pointer("from"), to: pointer("path"))
        case "copy": self = try .copy(from: pointer("from"), to: pointer("path"))
        case "test": self = try .test(pointer("path"), member("value"))
        default: throw BusError(.invalidJSON, "unknown op \"\(op)\"")
        }
    }

    fileprivate var json: JSONValue {
        switch self {
        case .add(let path, let value): Self.json("add", path, value: value)
        case .remove(let path): Self.json("remove", path)
        case .replace(let path, let value): Self.json("replace", path, value: value)
        case .move(let from, let to): Self.json("move", to, from: from)
        case .copy(let from, let to): Self.json("copy", to, from: from)
        case .test(let path, let value): Self.json("test", path, value: value)
        }
    }

    private static func json(
        _ op: String, _ path: JSONPointer, value: JSONValue? = nil, from: JSONPointer? = nil
    ) -> JSONValue {
        var members: [String: JSONValue] = ["op": .string(op), "path": .string(path.description)]
        members["value"] = value
        members["from"] = from.map { .string($0.description) }
        return .object(members)
    }

    /// Applies the operation in place; on error `document` may be half changed, so ``JSONPatch/apply(to:)`` works
    /// on a copy.
    fileprivate func apply(to document: inout JSONValue) throws(BusError) {
        switch self {
        case .add(let path, let value):
            try document.add(value, at: path)
        case .remove(let path):
            _ = try document.remove(at: path)
        case .replace(let path, let value):
            _ = try document.remove(at: path)
            try document.add(value, at: path)
        case .move(let from, let to):
            guard from == to || !from.isPrefix(of: to) else {
                throw BusError(.patchFailed, "cannot move \(from) into its own child \(to)")
            }
            let value = try document.remove(at: from)
            try document.add(value, at: to)
        case .copy(let from, let to):
            guard let value = document[from] else { throw JSONValue.absent(from) }
            try document.add(value, at: to)
        case .test(let path, let expected):
            guard document[path] == expected else { throw BusError(.patchFailed, "test failed at \(path)") }
        }
    }
}

extension BusError {
    fileprivate func inOperation(_ index: Int) -> BusError {
        BusError(code, "operation \(index): \(message)")
    }
}

// MARK: - Editing documents

extension JSONValue {
    fileprivate static func absent(_ path: JSONPointer) -> BusError {
        BusError(.patchFailed, "no value at \(path)")
    }

    /// RFC 6902 `add`: sets a member, inserts an element (index `count` or `-` appends), or at the root replaces
    /// the whole document.
    fileprivate mutating func add(_ value: JSONValue, at path: JSONPointer) throws(BusError) {
        guard let parent = path.parent, let token = path.tokens.last else {
            self = value
            return
        }
        try modify(path: parent) { container throws(BusError) in
            switch container {
            case .object(var members):
                members[token] = value
                container = .object(members)
            case .array(var elements):
                let index = token == "-" ? elements.count : JSONPointer.arrayIndex(token)
                guard let index, index <= elements.count else {
                    throw BusError(.patchFailed, "\(path): \(parent) has no index \(token)")
                }
                elements.insert(value, at: index)
                container = .array(elements)
            default:
                throw BusError(.patchFailed, "\(path): \(parent) is neither an object nor an array")
            }
        }
    }

    /// RFC 6902 `remove`: takes out the value at `path`, which must exist; at the root it leaves `null`.
    fileprivate mutating func remove(at path: JSONPointer) throws(BusError) -> JSONValue {
        guard let parent = path.parent, let token = path.tokens.last else {
            defer { self = .null }
            return self
        }
        var removed: JSONValue?
        try modify(path: parent) { container in
            switch container {
            case .object(var members):
                removed = members.removeValue(forKey: token)
                container = .object(members)
            case .array(var elements):
                guard let index = JSONPointer.arrayIndex(token), index < elements.count else { return }
                removed = elements.remove(at: index)
                container = .array(elements)
            default:
                return
            }
        }
        guard let removed else { throw Self.absent(path) }
        return removed
    }

    /// Calls `body` with the value at `path` (its tokens from `depth` on, below this value) in place.
    /// - Throws: ``ErrorCode/patchFailed`` if there is no value at `path`; whatever `body` throws.
    private mutating func modify(
        path: JSONPointer, from depth: Int = 0, _ body: (inout JSONValue) throws(BusError) -> Void
    ) throws(BusError) {
        guard depth < path.tokens.count else { return try body(&self) }
        let token = path.tokens[depth]
        switch self {
        case .object(var members):
            guard var child = members[token] else { break }
            try child.modify(path: path, from: depth + 1, body)
            members[token] = child
            self = .object(members)
            return
        case .array(var elements):
            guard let index = JSONPointer.arrayIndex(token), index < elements.count else { break }
            try elements[index].modify(path: path, from: depth + 1, body)
            self = .array(elements)
            return
        default:
            break
        }
        throw Self.absent(path)
    }
}
