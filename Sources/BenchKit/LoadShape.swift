/// How the producers of a p2p, topic or broadcast scenario pace themselves.
public enum LoadShape: String, Sendable, Hashable, CaseIterable {
    /// As fast as the socket takes it, the way NATS users publish: batches are written and flushed
    /// while the channel is writable. Nobody in the harness holds a window; an ACB producer also
    /// keeps to the bus's own CREDIT (protocol 2), as every protocol 2 client does.
    case open
    /// At most ``BenchSettings/window`` messages ahead of the slowest receiver, as the consumers
    /// report their progress (and, for ACB, within the bus's CREDIT): the same bounded, pipelined
    /// load on both servers.
    case window

    /// What a scenario name ends with to ask for this shape: nothing for the open shape, the default.
    var suffix: String { self == .open ? "" : "/" + rawValue }

    /// How titles tell the shapes apart.
    var label: String { self == .open ? "open" : "harness window" }

    /// `name` without its shape suffix, and the shape it asks for.
    static func split(_ name: String) -> (base: Substring, shape: LoadShape) {
        let suffix = window.suffix
        return name.hasSuffix(suffix) ? (name.dropLast(suffix.count), .window) : (Substring(name), .open)
    }
}
