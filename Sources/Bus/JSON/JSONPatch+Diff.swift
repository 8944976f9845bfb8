extension JSONPatch {
    /// A patch that turns `old` into `new`, so `try diff(from: a, to: b).apply(to: a) == b` for any `a` and `b`.
    ///
    /// Equal values give no operation. Two objects differ member by member, in UTF-8 key order: a `remove`, an
    /// `add` or the diff of the two values. Two arrays differ element by element over their common indexes, then
    /// lose their surplus elements from the last one down, or gain the missing ones in order. Any other change is
    /// one `replace` (at `""` for the whole document).
    public static func diff(from old: JSONValue, to new: JSONValue) -> JSONPatch {
        var operations: [Operation] = []
        appendDiff(from: old, to: new, at: .root, into: &operations)
        return JSONPatch(operations: operations)
    }

    /// The change from `old` to `new` as seen through the watched `paths`: a patch that always applies to `old` and
    /// gives each watched path the value `new` has there, or no value where `new` has none. It is empty when the
    /// change does not touch the watched paths.
    ///
    /// A path inside another listed path is covered by it and skipped. The others are compared in order, each
    /// against `old` with the earlier paths' operations applied:
    /// - absent in both, or equal: no operation;
    /// - present in both: ``diff(from:to:)`` of the two values, under the path;
    /// - present only in `new`: an `add`, with `new`'s value, of the path's shallowest ancestor that is missing —
    ///   or, when that ancestor's parent cannot take it (a scalar, or an array it would not extend), a `replace` of
    ///   the parent with `new`'s value;
    /// - present only in `old`: a `remove`. An array element goes with every later one (`new` has none of them
    ///   either), so that no other watched element shifts; if `new` made the array an object, it is replaced.
    ///
    /// Operations reach outside the watched paths only when an ancestor must be created or replaced, or array
    /// elements after a removed one go.
    public static func diff(from old: JSONValue, to new: JSONValue, restrictedTo paths: [JSONPointer]) -> JSONPatch {
        var document = old
        var operations: [Operation] = []
        for path in outermost(paths) {
            let change = changes(at: path, in: document, to: new)
            guard let changed = try? JSONPatch(operations: change).apply(to: document) else {
                // Unreachable: each change is computed against the document it applies to. The full diff is correct.
                assertionFailure("the restricted diff at \(path) does not apply")
                return diff(from: old, to: new)
            }
            document = changed
            operations += change
        }
        return JSONPatch(operations: operations)
    }

    private static func appendDiff(
        from old: JSONValue, to new: JSONValue, at path: JSONPointer, into operations: inout [Operation]
    ) {
        guard old != new else { return }
        switch (old, new) {
        case (.object(let oldMembers), .object(let newMembers)):
            for key in Set(oldMembers.keys).union(newMembers.keys).sorted(by: JSONValue.utf8Order) {
                let member = path.appending(key)
                switch (oldMembers[key], newMembers[key]) {
                case (let before?, let after?): appendDiff(from: before, to: after, at: member, into: &operations)
                case (nil, let after?): operations.append(.add(member, after))
                case (_?, nil): operations.append(.remove(member))
                case (nil, nil): break
                }
            }
        case (.array(let oldElements), .array(let newElements)):
            let common = min(oldElements.count, newElements.count)
            for index in 0..<common {
                appendDiff(
                    from: oldElements[index], to: newElements[index], at: path.appending(String(index)),
                    into: &operations
                )
            }
            operations += (common..<oldElements.count).reversed().map { .remove(path.appending(String($0))) }
            operations += (common..<newElements.count).map { .add(path.appending(String($0)), newElements[$0]) }
        default:
            operations.append(.replace(path, new))
        }
    }

    /// `paths` without repeats and without those inside another listed path, in their first order.
    private static func outermost(_ paths: [JSONPointer]) -> [JSONPointer] {
        var outermost: [JSONPointer] = []
        for path in paths where !outermost.contains(path) {
            if !paths.contains(where: { $0 != path && $0.isPrefix(of: path) }) { outermost.append(path) }
        }
        return outermost
    }

    /// The operations that give `path` in `document` the value it has in `new`.
    private static func changes(at path: JSONPointer, in document: JSONValue, to new: JSONValue) -> [Operation] {
        switch (document[path], new[path]) {
        case (nil, nil):
            return []
        case (let before?, let after?):
            var operations: [Operation] = []
            appendDiff(from: before, to: after, at: path, into: &operations)
            return operations
        case (nil, _?):
            return [addition(at: path, in: document, from: new)]
        case (_?, nil):
            return removal(at: path, in: document, to: new)
        }
    }

    /// Adds `new`'s value at the shallowest ancestor of `path` that `document` lacks, or replaces that ancestor's
    /// parent with `new`'s value when the parent cannot take it.
    private static func addition(at path: JSONPointer, in document: JSONValue, from new: JSONValue) -> Operation {
        var (prefix, before, after) = (JSONPointer.root, document, new)
        for token in path.tokens {
            guard let afterChild = after.child(token) else { break }
            guard let beforeChild = before.child(token) else {
                return canAdd(token, to: before) ? .add(prefix.appending(token), afterChild) : .replace(prefix, after)
            }
            (prefix, before, after) = (prefix.appending(token), beforeChild, afterChild)
        }
        return .replace(prefix, after)  // Unreachable: `document` lacks `path` and `new` has it.
    }

    /// Whether `add` can put a new value at `token` of `container` without shifting anything.
    private static func canAdd(_ token: String, to container: JSONValue) -> Bool {
        switch container {
        case .object: true
        case .array(let elements): JSONPointer.arrayIndex(token) == elements.count
        default: false
        }
    }

    /// Removes `path` from `document`; an array element goes with every later one, unless `new` made that array
    /// an object, which then replaces it.
    private static func removal(at path: JSONPointer, in document: JSONValue, to new: JSONValue) -> [Operation] {
        guard let parent = path.parent, case .array(let elements)? = document[parent],
            let index = path.tokens.last.flatMap(JSONPointer.arrayIndex)
        else { return [.remove(path)] }
        if let replacement = new[parent], case .object = replacement { return [.replace(parent, replacement)] }
        return (index..<elements.count).reversed().map { .remove(parent.appending(String($0))) }
    }
}
