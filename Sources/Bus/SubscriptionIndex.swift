/// A trie of subscription patterns that finds every subscriber of a topic in time proportional to
/// the topic's depth, not the number of subscriptions.
///
/// Not thread-safe: a value type; the owner serialises access.
public struct SubscriptionIndex<Subscriber: Hashable & Sendable>: Sendable {
    private struct Node: Sendable {
        /// Literal tokens, plus `*` for single-token wildcards (a literal token can never be `*`).
        var children: [Substring: Node] = [:]
        /// Subscribers whose pattern ends here.
        var here: Set<Subscriber> = []
        /// Subscribers whose pattern ends with `>` here: they match one or more further tokens.
        var rest: Set<Subscriber> = []

        var isEmpty: Bool { children.isEmpty && here.isEmpty && rest.isEmpty }
    }

    private var root = Node()

    public init() {}

    /// Adds `subscriber` under `pattern` (validated with ``Topic/validatePattern(_:)``).
    /// - Returns: false if it was already there.
    @discardableResult
    public mutating func insert(_ pattern: [Substring], _ subscriber: Subscriber) -> Bool {
        Self.insert(pattern[...], subscriber, into: &root)
    }

    /// Removes `subscriber` from `pattern`, pruning empty branches.
    /// - Returns: false if it was not there.
    @discardableResult
    public mutating func remove(_ pattern: [Substring], _ subscriber: Subscriber) -> Bool {
        Self.remove(pattern[...], subscriber, from: &root)
    }

    /// Every subscriber with a pattern matching `topic`, each once.
    public func subscribers(of topic: String) -> Set<Subscriber> {
        var found = Set<Subscriber>()
        let tokens = topic.split(separator: ".", omittingEmptySubsequences: false)
        Self.collect(root, tokens[...], into: &found)
        return found
    }

    public var isEmpty: Bool { root.isEmpty }

    private static func insert(_ tokens: ArraySlice<Substring>, _ subscriber: Subscriber, into node: inout Node) -> Bool
    {
        guard let first = tokens.first else { return node.here.insert(subscriber).inserted }
        if first == ">" { return node.rest.insert(subscriber).inserted }
        return insert(tokens.dropFirst(), subscriber, into: &node.children[first, default: Node()])
    }

    private static func remove(_ tokens: ArraySlice<Substring>, _ subscriber: Subscriber, from node: inout Node) -> Bool
    {
        guard let first = tokens.first else { return node.here.remove(subscriber) != nil }
        if first == ">" { return node.rest.remove(subscriber) != nil }
        guard var child = node.children[first] else { return false }
        let removed = remove(tokens.dropFirst(), subscriber, from: &child)
        node.children[first] = child.isEmpty ? nil : child
        return removed
    }

    private static func collect(_ node: Node, _ tokens: ArraySlice<Substring>, into found: inout Set<Subscriber>) {
        guard let first = tokens.first else {
            found.formUnion(node.here)
            return
        }
        found.formUnion(node.rest)
        if let child = node.children[first] { collect(child, tokens.dropFirst(), into: &found) }
        if let star = node.children["*"] { collect(star, tokens.dropFirst(), into: &found) }
    }
}
