/// A JSON Pointer (RFC 6901): the location of one value inside a JSON document, as a list of reference tokens.
///
/// The text form is `""` for the whole document, otherwise `/` before each token, with `~` written `~0` and `/`
/// written `~1`. A token names an object member, or an array element by its decimal index without leading zeros;
/// `-` names the position after an array's last element and is only meaningful to a JSON Patch `add`.
public struct JSONPointer: Sendable, Hashable, CustomStringConvertible {
    /// The unescaped reference tokens, outermost first; empty for the whole document.
    public let tokens: [String]

    /// The pointer to the whole document.
    public static let root = JSONPointer(tokens: [])

    /// A pointer made of unescaped tokens.
    public init(tokens: [String]) {
        self.tokens = tokens
    }

    /// Parses the text form.
    /// - Throws: ``ErrorCode/invalidPointer`` if `text` is neither empty nor starts with `/`, or has a `~` that is
    ///   not followed by `0` or `1`.
    public init(_ text: String) throws(BusError) {
        guard !text.isEmpty else {
            self.tokens = []
            return
        }
        guard text.utf8.first == UInt8(ascii: "/") else {
            throw BusError(.invalidPointer, "JSON pointer \"\(text)\" is neither empty nor starts with '/'")
        }
        var tokens: [String] = []
        // Splitting the UTF-8 bytes, not the Characters: a "/" followed by a combining mark still separates tokens.
        for escaped in text.utf8.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard let token = Self.unescape(escaped) else {
                throw BusError(.invalidPointer, "JSON pointer \"\(text)\" has a '~' not followed by '0' or '1'")
            }
            tokens.append(token)
        }
        self.tokens = tokens
    }

    /// The text form, each token escaped again.
    public var description: String {
        tokens.map { "/" + Self.escape($0) }.joined()
    }

    /// Whether this pointer is `other` or one of its ancestors; the root is a prefix of every pointer.
    public func isPrefix(of other: JSONPointer) -> Bool {
        other.tokens.starts(with: tokens)
    }

    /// The pointer to the member or element `token` of the value this pointer names.
    public func appending(_ token: String) -> JSONPointer {
        JSONPointer(tokens: tokens + [token])
    }

    /// The pointer to the container of the value this pointer names; `nil` for the root.
    var parent: JSONPointer? {
        tokens.isEmpty ? nil : JSONPointer(tokens: Array(tokens.dropLast()))
    }

    /// The array index `token` names: decimal digits without a leading zero; `nil` for anything else, `-` included.
    static func arrayIndex(_ token: String) -> Int? {
        let digits = token.utf8
        guard let first = digits.first, first != UInt8(ascii: "0") || digits.count == 1,
            digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return nil }
        return Int(token)
    }

    /// `~1` → `/` and `~0` → `~`, in one pass so `~01` is `~1`; `nil` for any other `~`.
    private static func unescape(_ escaped: Substring.UTF8View) -> String? {
        var unescaped: [UInt8] = []
        var bytes = escaped.makeIterator()
        while let byte = bytes.next() {
            guard byte == UInt8(ascii: "~") else {
                unescaped.append(byte)
                continue
            }
            switch bytes.next() {
            case UInt8(ascii: "0"): unescaped.append(UInt8(ascii: "~"))
            case UInt8(ascii: "1"): unescaped.append(UInt8(ascii: "/"))
            default: return nil
            }
        }
        // Only ASCII bytes were replaced by ASCII bytes, so the UTF-8 is still valid.
        return String(decoding: unescaped, as: UTF8.self)
    }

    private static func escape(_ token: String) -> String {
        var escaped = ""
        for scalar in token.unicodeScalars {
            switch scalar {
            case "~": escaped += "~0"
            case "/": escaped += "~1"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}
