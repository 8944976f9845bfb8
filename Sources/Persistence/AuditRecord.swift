public import Bus

/// One audit record, as the audit log file and the Kafka audit stream carry it (docs/audit.md).
/// `schema` changes only when a field's meaning does.
public struct AuditRecord: Codable, Sendable, Equatable {
    public var schema = 1
    /// Unique per event (`<run>-<n>`); a record delivered twice carries the same id.
    public var id: String
    public var kind: String
    public var tenant: String
    public var agent: String
    /// Unix milliseconds.
    public var at: UInt64
    public var detail: [String: String]

    public init(_ event: AuditEvent, id: String) {
        self.id = id
        kind = event.kind
        tenant = event.tenant
        agent = event.agentID
        at = event.at
        detail = event.detail
    }

    /// The Kafka topic of a tenant's audit stream: `acb.<tenant>.audit`, the tenant with every
    /// byte outside `[A-Za-z0-9.-]` written `_XX` (hex), so distinct tenants get distinct topics.
    /// A name over Kafka's 249 characters keeps its first 200 and ends in `_` and a 64-bit
    /// FNV-1a hash of the tenant instead.
    /// Events of no tenant (a failed handshake, before any token was accepted) go to `acb.audit`.
    public static func topic(tenant: String) -> String {
        guard !tenant.isEmpty else { return "acb.audit" }
        let name = escapedTopic(tenant)
        guard name.count > 249 else { return name }
        let hash = tenant.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return String(name.prefix(200)) + "_" + String(hash, radix: 16) + ".audit"
    }

    private static func escapedTopic(_ tenant: String) -> String {
        var name = Array("acb.".utf8)
        name.reserveCapacity(tenant.utf8.count + 10)
        for byte in tenant.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"):
                name.append(byte)
            default:
                name += ("_" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)).utf8
            }
        }
        return String(decoding: name + ".audit".utf8, as: UTF8.self)
    }

    /// The record as JSON, keys in a fixed order. Written by hand: the audit stream encodes every
    /// event, and `JSONEncoder` costs several times more per record.
    static func json(_ event: AuditEvent, id: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + event.detail.count * 32)
        out += #"{"schema":1"#.utf8
        out += #","id":"#.utf8
        appendString(id, to: &out)
        out += #","kind":"#.utf8
        appendString(event.kind, to: &out)
        out += #","tenant":"#.utf8
        appendString(event.tenant, to: &out)
        out += #","agent":"#.utf8
        appendString(event.agentID, to: &out)
        out += #","at":"#.utf8
        out += "\(event.at)".utf8
        out += #","detail":{"#.utf8
        for (index, (key, value)) in event.detail.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            appendString(value, to: &out)
        }
        out += "}}".utf8
        return out
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    private static func appendString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += #"\""#.utf8
            case UInt8(ascii: "\\"): out += #"\\"#.utf8
            case 0..<0x20: out += "\\u00\(String(byte, radix: 16).leftPadded(to: 2))".utf8
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A journal entry of the audit stream: topic and key (each a u16 length and bytes), then the JSON.
    static func journalEntry(_ event: AuditEvent, id: String) -> [UInt8] {
        var entry: [UInt8] = []
        for field in [topic(tenant: event.tenant), event.agentID] {
            let bytes = field.utf8.prefix(Int(UInt16.max))
            entry += [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)]
            entry += bytes
        }
        entry += json(event, id: id)
        return entry
    }

    /// Topic, key and value of a journal entry; nil if it is cut short.
    static func parseJournalEntry(_ entry: [UInt8]) -> (topic: String, key: [UInt8], value: [UInt8])? {
        var index = 0
        var fields: [[UInt8]] = []
        for _ in 0..<2 {
            guard entry.count >= index + 2 else { return nil }
            let length = Int(entry[index]) << 8 | Int(entry[index + 1])
            guard entry.count >= index + 2 + length else { return nil }
            fields.append(Array(entry[index + 2..<index + 2 + length]))
            index += 2 + length
        }
        return (String(decoding: fields[0], as: UTF8.self), fields[1], Array(entry[index...]))
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
