import Foundation

/// The text of one member of a JSON object, found without turning the rest into values: a context's
/// body passes from the request to the bus byte for byte (numbers keep every digit, keys their
/// order), where `JSONSerialization` would round numbers and reorder keys.
enum JSONMember {
    /// The bytes of the value of the top-level member `name` of the object `json` (the last one,
    /// should the name repeat, as `JSONSerialization` keeps it); nil when there is none or `json` is
    /// no object. `json` is expected to be valid JSON (checked before); invalid JSON gives nil or
    /// some slice of it, never a crash. O(n) in the bytes of `json`.
    static func value(_ name: String, in json: [UInt8]) -> ArraySlice<UInt8>? {
        var scanner = Scanner(bytes: json)
        scanner.skipSpace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        var found: ArraySlice<UInt8>?
        while true {
            scanner.skipSpace()
            guard let key = scanner.string() else { return found }
            scanner.skipSpace()
            guard scanner.take(UInt8(ascii: ":")) else { return found }
            scanner.skipSpace()
            guard let value = scanner.value() else { return found }
            if Self.text(of: json[key]) == name { found = json[value] }
            scanner.skipSpace()
            guard scanner.take(UInt8(ascii: ",")) else { return found }
        }
    }

    /// The text of a JSON string (`quoted` has its quotes); one with escapes (`"b\u006fdy"`) is
    /// decoded as JSON decodes it.
    private static func text(of quoted: ArraySlice<UInt8>) -> String? {
        let inner = quoted.dropFirst().dropLast()
        guard inner.contains(UInt8(ascii: "\\")) else { return String(decoding: inner, as: UTF8.self) }
        return (try? JSONSerialization.jsonObject(with: Data(quoted), options: .fragmentsAllowed)) as? String
    }

    /// A cursor over JSON text that steps over whole tokens and values.
    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        mutating func skipSpace() {
            while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
        }

        /// JSON's whitespace: space, tab, line feed, carriage return.
        static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }

        /// Steps over `byte` if it is next.
        mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        /// Steps over the string that starts here; its range, quotes included.
        mutating func string() -> Range<Int>? {
            let start = index
            guard take(UInt8(ascii: "\"")) else { return nil }
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""):
                    index += 1
                    return start..<index
                default: index += 1
                }
            }
            return nil
        }

        /// Steps over the value that starts here (a string, an object or array with everything in
        /// it, or a number, `true`, `false` or `null`); its range.
        mutating func value() -> Range<Int>? {
            let start = index
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                return string()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while index < bytes.count {
                    switch bytes[index] {
                    case UInt8(ascii: "\""):
                        guard string() != nil else { return nil }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
                    default: break
                    }
                    index += 1
                    if depth == 0 { return start..<index }
                }
                return nil
            default:
                let ends = [UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]")]
                while index < bytes.count, !Self.isSpace(bytes[index]), !ends.contains(bytes[index]) { index += 1 }
                return index > start ? start..<index : nil
            }
        }
    }
}
