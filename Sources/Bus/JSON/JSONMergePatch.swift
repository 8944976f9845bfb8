/// JSON Merge Patch (RFC 7396): a patch that looks like the document it changes.
///
/// An object patch merges into an object member by member, a `null` member deletes; any other patch replaces the
/// target whole. A merge patch cannot set a `null` member or change part of an array; ``JSONPatch`` can.
public enum JSONMergePatch {
    /// `target` with `patch` merged in, exactly as RFC 7396 §2's `MergePatch(Target, Patch)`.
    public static func apply(_ patch: JSONValue, to target: JSONValue) -> JSONValue {
        guard case .object(let changes) = patch else { return patch }
        var members: [String: JSONValue] = [:]
        if case .object(let targetMembers) = target { members = targetMembers }
        for (name, value) in changes {
            members[name] = value == .null ? nil : apply(value, to: members[name] ?? .null)
        }
        return .object(members)
    }
}
