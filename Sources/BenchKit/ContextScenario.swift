/// A context scenario (`ctx-…`): ACB's shared, versioned documents beside a NATS JetStream KV
/// bucket with file storage, the nearest thing NATS has to them.
///
/// Every scenario makes its own contexts (on NATS its own bucket, deleted afterwards), so runs
/// never see each other's versions.
public enum ContextScenario: Sendable, Hashable {
    /// `ctx-put:W`: W writers, each putting ~100-byte JSON bodies to a context of its own, as many in
    /// flight as the window allows; counts the writes the server says are committed.
    case put(writers: Int)
    /// `ctx-get:C`: C clients getting one small context, one get in flight each.
    case get(clients: Int)
    /// `ctx-watch:N`: one writer updating one context ``watchRate`` times a second, and N watchers
    /// of it, each of which must see every version once and in order.
    case watch(watchers: Int)
    /// `ctx-cas:W`: W writers incrementing one counter by compare-and-swap; the final value must
    /// equal the increments committed (no lost updates).
    case cas(writers: Int)

    /// Updates a second by `ctx-watch`'s writer.
    public static let watchRate = 1_000

    /// Parses `ctx-put:W`, `ctx-get:C`, `ctx-watch:N` or `ctx-cas:W`; without `:size`, the defaults:
    /// 10 writers, 1 client, 100 watchers and 10 writers.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return nil }
        let size = parts.count == 2 ? Int(parts[1]) : nil
        if parts.count == 2 {
            guard let size, size > 0 else { return nil }
        }
        switch parts[0] {
        case "ctx-put": self = .put(writers: size ?? 10)
        case "ctx-get": self = .get(clients: size ?? 1)
        case "ctx-watch": self = .watch(watchers: size ?? 100)
        case "ctx-cas": self = .cas(writers: size ?? 10)
        default: return nil
        }
    }

    /// The name `init?(_:)` parses, with its size.
    public var id: String {
        switch self {
        case .put(let writers): "ctx-put:\(writers)"
        case .get(let clients): "ctx-get:\(clients)"
        case .watch(let watchers): "ctx-watch:\(watchers)"
        case .cas(let writers): "ctx-cas:\(writers)"
        }
    }

    public var title: String {
        switch self {
        case .put(let writers): "context puts, committed, \(writers) writer(s)"
        case .get(let clients): "context gets, \(clients) client(s)"
        case .watch(let watchers): "context watch: 1 writer at \(Self.watchRate)/s → \(watchers) watchers"
        case .cas(let writers): "context compare-and-swap on one counter, \(writers) writer(s)"
        }
    }
}
