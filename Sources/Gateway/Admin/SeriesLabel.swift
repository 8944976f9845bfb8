/// Adds one label to every sample of a Prometheus text exposition: in a cluster, every series of
/// a node carries its node id, so series of several nodes never merge.
enum SeriesLabel {
    /// `text` with `name="value"` first among each sample's labels. `value` needs no escaping
    /// (node ids are letters, digits, `.`, `_` and `-`).
    static func adding(_ name: String, _ value: String, to text: [UInt8]) -> [UInt8] {
        let label = Array("\(name)=\"\(value)\"".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.count + text.count / 8)
        for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            defer { out.append(UInt8(ascii: "\n")) }
            // A metric name holds neither `{` nor a space: the first of them ends it.
            guard line.first != UInt8(ascii: "#"),
                let end = line.firstIndex(where: { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: " ") })
            else {
                out.append(contentsOf: line)
                continue
            }
            out.append(contentsOf: line[..<end])
            if line[end] == UInt8(ascii: "{") {
                out.append(UInt8(ascii: "{"))
                out.append(contentsOf: label)
                let rest = line[line.index(after: end)...]
                if rest.first != UInt8(ascii: "}") { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: rest)
            } else {
                out.append(UInt8(ascii: "{"))
                out.append(contentsOf: label)
                out.append(UInt8(ascii: "}"))
                out.append(contentsOf: line[end...])
            }
        }
        out.removeLast()  // the split gave one more line than there were newlines
        return out
    }
}
