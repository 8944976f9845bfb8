/// Topic names and subscription patterns: dot-separated tokens; in a pattern `*` matches exactly one
/// token and `>`, only as the last token, matches one or more.
public enum Topic {
    /// Checks a topic a message is published on: 1...256 bytes, non-empty tokens, no wildcards.
    public static func validate(_ topic: String) throws(BusError) {
        for token in try tokens(of: topic, field: "topic") where token == "*" || token == ">" {
            throw BusError(.invalidArgument, "topic may not contain wildcards")
        }
    }

    /// Checks a subscription pattern and returns its tokens.
    public static func validatePattern(_ pattern: String) throws(BusError) -> [Substring] {
        let parts = try tokens(of: pattern, field: "pattern")
        if let index = parts.firstIndex(of: ">"), index != parts.count - 1 {
            throw BusError(.invalidArgument, "'>' may only be the last token of a pattern")
        }
        return parts
    }

    /// Whether `name` (dot-separated tokens) matches the pattern `tokens` (from ``validatePattern(_:)``).
    public static func matches(_ tokens: [Substring], _ name: String) -> Bool {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false)[...]
        for token in tokens {
            if token == ">" { return !parts.isEmpty }
            guard let part = parts.popFirst(), token == "*" || token == part else { return false }
        }
        return parts.isEmpty
    }

    /// Whether `string` is a pattern: one of its tokens is `*` or `>`.
    public static func isPattern(_ string: String) -> Bool {
        string.split(separator: ".").contains { $0 == "*" || $0 == ">" }
    }

    private static func tokens(of string: String, field: String) throws(BusError) -> [Substring] {
        guard !string.isEmpty, string.utf8.count <= Limits.maxTopicBytes else {
            throw BusError(.invalidArgument, "\(field) must be 1 to \(Limits.maxTopicBytes) bytes")
        }
        let parts = string.split(separator: ".", omittingEmptySubsequences: false)
        for part in parts {
            guard !part.isEmpty else { throw BusError(.invalidArgument, "\(field) has an empty token") }
            guard part.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
                throw BusError(.invalidArgument, "\(field) may not contain spaces or control characters")
            }
            if part.count > 1, part.contains("*") || part.contains(">") {
                throw BusError(.invalidArgument, "wildcards must be whole tokens in \(field)")
            }
        }
        return parts
    }
}
