extension JSONValue {
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
}

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
