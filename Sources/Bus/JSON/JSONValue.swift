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
