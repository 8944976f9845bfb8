/// A JSON value (RFC 8259) as plain Swift data: what the bus parses, patches, compares and writes back.
///
/// Equality is JSON equality: numbers compare by value, object members are unordered. Strings and keys are
/// Swift strings, so two that differ only in Unicode normalization are equal (and are one key).
public enum JSONValue: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number; always finite when parsed.
    case number(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object; a key that appears twice in the text keeps its last value.
    case object([String: JSONValue])

    /// The deepest nesting of arrays and objects the parser accepts.
    static let maxDepth = 128

    /// Parses one UTF-8 JSON text: a single value of any kind, with optional whitespace around it.
    ///
    /// The parser is strict RFC 8259: no trailing commas, leading zeros, single quotes, `NaN`, unescaped control
    /// characters, lone UTF-16 surrogates in `\u` escapes, or numbers too large for a `Double`; a surrogate pair
    /// such as `\uD83D\uDE00` becomes one scalar. Nesting deeper than 128 arrays or objects is refused.
    /// - Throws: ``ErrorCode/invalidJSON``, naming the byte offset of the first problem.
    public init(parsing bytes: some Collection<UInt8>) throws(BusError) {
        var parser = JSONParser(bytes: Array(bytes))
        self = try parser.parseDocument()
    }

    /// The canonical compact UTF-8 text: no whitespace, object keys sorted by their UTF-8 bytes, integers below
    /// 2^53 without fraction or exponent, other numbers in Swift's shortest round-trip form, strings escaped only
    /// where RFC 8259 requires it (`"`, `\`, control characters) and otherwise written as UTF-8.
    ///
    /// Equal values give equal bytes. A non-finite number, which only code can construct, is written `null`.
    public func serialized() -> [UInt8] {
        var output: [UInt8] = []
        write(to: &output)
        return output
    }

    /// The value at `pointer`, or `nil` if the document has nothing there.
    public subscript(pointer: JSONPointer) -> JSONValue? {
        var value = self
        for token in pointer.tokens {
            guard let child = value.child(token) else { return nil }
            value = child
        }
        return value
    }

    /// The object member or array element `token` names, or `nil`.
    func child(_ token: String) -> JSONValue? {
        switch self {
        case .object(let members):
            return members[token]
        case .array(let elements):
            guard let index = JSONPointer.arrayIndex(token), index < elements.count else { return nil }
            return elements[index]
        default:
            return nil
        }
    }

    /// The order of object keys in canonical text and in diffs: by UTF-8 bytes.
    static func utf8Order(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.lexicographicallyPrecedes(rhs.utf8)
    }
}

// MARK: - Writing

extension JSONValue {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    private func write(to output: inout [UInt8]) {
        switch self {
        case .null:
            output += "null".utf8
        case .bool(let flag):
            output += (flag ? "true" : "false").utf8
        case .number(let number):
            output += Self.text(of: number).utf8
        case .string(let string):
            Self.writeString(string, to: &output)
        case .array(let elements):
            Self.writeList(elements, "[", "]", to: &output) { element, output in element.write(to: &output) }
        case .object(let members):
            let sorted = members.sorted { Self.utf8Order($0.key, $1.key) }
            Self.writeList(sorted, "{", "}", to: &output) { member, output in
                Self.writeString(member.key, to: &output)
                output.append(UInt8(ascii: ":"))
                member.value.write(to: &output)
            }
        }
    }

    /// Writes `open`, the items separated by commas, then `close`.
    private static func writeList<Items: Sequence>(
        _ items: Items, _ open: Unicode.Scalar, _ close: Unicode.Scalar, to output: inout [UInt8],
        writeItem: (Items.Element, inout [UInt8]) -> Void
    ) {
        output.append(UInt8(ascii: open))
        for (index, item) in items.enumerated() {
            if index > 0 { output.append(UInt8(ascii: ",")) }
            writeItem(item, &output)
        }
        output.append(UInt8(ascii: close))
    }

    private static func text(of number: Double) -> String {
        guard number.isFinite else { return "null" }
        if number == number.rounded(), abs(number) < 0x1p53 { return String(Int64(number)) }
        return number.description
    }

    private static func writeString(_ string: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): output += [UInt8(ascii: "\\"), byte]
            case 0x08: output += #"\b"#.utf8
            case 0x09: output += #"\t"#.utf8
            case 0x0A: output += #"\n"#.utf8
            case 0x0C: output += #"\f"#.utf8
            case 0x0D: output += #"\r"#.utf8
            case ..<0x20:
                output += #"\u00"#.utf8
                output += [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]]
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}

// MARK: - Parsing

/// A strict recursive-descent parser of one RFC 8259 JSON text; `offset` is always the next unread byte.
private struct JSONParser {
    private let bytes: [UInt8]
    private var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws(BusError) -> JSONValue {
        try validateUTF8()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard offset == bytes.count else { throw failure("unexpected data after the value") }
        return value
    }

    /// Parses a value nested in `depth` arrays or objects.
    private mutating func parseValue(depth: Int) throws(BusError) -> JSONValue {
        skipWhitespace()
        guard let byte = peek() else { throw failure("expected a value") }
        switch Unicode.Scalar(byte) {
        case "[": return try parseArray(depth: depth + 1)
        case "{": return try parseObject(depth: depth + 1)
        case "\"": return .string(try parseString())
        case "t": return try parseLiteral("true", .bool(true))
        case "f": return try parseLiteral("false", .bool(false))
        case "n": return try parseLiteral("null", .null)
        case "-", "0"..."9": return try parseNumber()
        default: throw failure("unexpected character")
        }
    }

    private mutating func parseArray(depth: Int) throws(BusError) -> JSONValue {
        var elements: [JSONValue] = []
        try parseList(depth: depth, closedBy: "]") { parser throws(BusError) in
            elements.append(try parser.parseValue(depth: depth))
        }
        return .array(elements)
    }

    private mutating func parseObject(depth: Int) throws(BusError) -> JSONValue {
        var members: [String: JSONValue] = [:]
        try parseList(depth: depth, closedBy: "}") { parser throws(BusError) in
            parser.skipWhitespace()
            guard parser.peek() == UInt8(ascii: "\"") else { throw parser.failure("expected a member name") }
            let key = try parser.parseString()
            parser.skipWhitespace()
            guard parser.consume(":") else { throw parser.failure("expected ':'") }
            members[key] = try parser.parseValue(depth: depth)
        }
        return .object(members)
    }

    /// Parses an opening bracket, then `item (, item)*` or nothing, then `close`; a trailing comma is an error.
    private mutating func parseList(
        depth: Int, closedBy close: Unicode.Scalar, _ parseItem: (inout JSONParser) throws(BusError) -> Void
    ) throws(BusError) {
        guard depth <= JSONValue.maxDepth else { throw failure("nesting deeper than \(JSONValue.maxDepth)") }
        offset += 1
        skipWhitespace()
        if consume(close) { return }
        repeat {
            try parseItem(&self)
            skipWhitespace()
        } while consume(",")
        guard consume(close) else { throw failure("expected ',' or '\(close)'") }
    }

    private mutating func parseLiteral(_ word: String, _ value: JSONValue) throws(BusError) -> JSONValue {
        guard bytes[offset...].starts(with: word.utf8) else { throw failure("unexpected character") }
        offset += word.utf8.count
        return value
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, converted only once the grammar matched.
    private mutating func parseNumber() throws(BusError) -> JSONValue {
        let start = offset
        _ = consume("-")
        if !consume("0") { try parseDigits() }
        if consume(".") { try parseDigits() }
        if consume("e") || consume("E") {
            if !consume("+") { _ = consume("-") }
            try parseDigits()
        }
        guard let number = Double(String(decoding: bytes[start..<offset], as: UTF8.self)), number.isFinite else {
            throw failure("number out of range", at: start)
        }
        return .number(number)
    }

    private mutating func parseDigits() throws(BusError) {
        guard let first = peek(), Self.isDigit(first) else { throw failure("expected a digit") }
        while let byte = peek(), Self.isDigit(byte) { offset += 1 }
    }

    private mutating func parseString() throws(BusError) -> String {
        offset += 1
        var utf8: [UInt8] = []
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "\""):
                offset += 1
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                offset += 1
                let scalar = try parseEscape()
                UTF8.encode(scalar) { utf8.append($0) }
            case ..<0x20:
                throw failure("unescaped control character in a string")
            default:
                offset += 1
                utf8.append(byte)
            }
        }
        throw failure("unterminated string")
    }

    /// Parses what follows a backslash.
    private mutating func parseEscape() throws(BusError) -> Unicode.Scalar {
        guard let byte = peek() else { throw failure("unterminated string") }
        offset += 1
        switch Unicode.Scalar(byte) {
        case "\"", "\\", "/": return Unicode.Scalar(byte)
        case "b": return "\u{08}"
        case "f": return "\u{0C}"
        case "n": return "\n"
        case "r": return "\r"
        case "t": return "\t"
        case "u": return try parseUnicodeEscape()
        default: throw failure("invalid escape", at: offset - 1)
        }
    }

    /// Parses the four hex digits after `\u`, and a second `\uXXXX` when the first is a high surrogate.
    private mutating func parseUnicodeEscape() throws(BusError) -> Unicode.Scalar {
        let start = offset - 2
        var value = try parseHex4()
        if (0xD800...0xDBFF).contains(value), bytes[offset...].starts(with: #"\u"#.utf8) {
            offset += 2
            let low = try parseHex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw failure("lone surrogate", at: start) }
            value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
        }
        // Unicode.Scalar refuses surrogates, so this also catches a lone high or low one.
        guard let scalar = Unicode.Scalar(value) else { throw failure("lone surrogate", at: start) }
        return scalar
    }

    private mutating func parseHex4() throws(BusError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek(), let digit = Self.hexValue(byte) else { throw failure("expected a hex digit") }
            value = value << 4 | digit
            offset += 1
        }
        return value
    }

    /// JSON text is UTF-8 (RFC 8259 §8.1): checked once up front, so strings decode without repair.
    private func validateUTF8() throws(BusError) {
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        var position = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): position += UTF8.width(scalar)
            case .emptyInput: return
            case .error: throw failure("invalid UTF-8", at: position)
            }
        }
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { offset += 1 }
    }

    private func peek() -> UInt8? { offset < bytes.count ? bytes[offset] : nil }

    /// Consumes the next byte if it is `scalar`.
    private mutating func consume(_ scalar: Unicode.Scalar) -> Bool {
        guard peek() == UInt8(ascii: scalar) else { return false }
        offset += 1
        return true
    }

    private func failure(_ problem: String, at position: Int? = nil) -> BusError {
        BusError(.invalidJSON, "\(problem) at byte \(position ?? offset)")
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch Unicode.Scalar(byte) {
        case "0"..."9": UInt32(byte - UInt8(ascii: "0"))
        case "a"..."f": UInt32(byte - UInt8(ascii: "a") + 10)
        case "A"..."F": UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
