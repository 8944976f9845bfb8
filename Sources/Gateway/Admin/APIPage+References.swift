import Foundation
import Yams

/// Following `$ref`: the page shows what a reference points to, never the reference itself.
extension APIPage {
    /// `node` with its chain of `$ref` followed, or nil when a reference points nowhere in the
    /// document or the chain is longer than ``maxDepth`` (a loop).
    func resolved(_ node: Node) -> Node? {
        var current = node
        for _ in 0...Self.maxDepth {
            guard let reference = current["$ref"]?.string else { return current }
            guard let next = target(of: reference) else { return nil }
            current = next
        }
        return nil
    }

    /// The references `node` goes through before its content: empty when it is no reference.
    /// What ``fields(of:prefix:depth:visiting:)`` remembers to stop at a schema that contains itself.
    func references(of node: Node) -> [String] {
        var chain: [String] = []
        var current = node
        while let reference = current["$ref"]?.string, chain.count <= Self.maxDepth, !chain.contains(reference) {
            chain.append(reference)
            guard let next = target(of: reference) else { break }
            current = next
        }
        return chain
    }

    /// What a local reference (`#/components/schemas/Agent`, a JSON pointer after `#`) names.
    func target(of reference: String) -> Node? {
        guard reference.hasPrefix("#/") else { return nil }
        var current: Node? = document
        for token in reference.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) {
            let key = (token.removingPercentEncoding ?? String(token))
                .replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch current {
            case .mapping(let mapping)?: current = mapping[key]
            case .sequence(let sequence)?: current = Int(key).flatMap { $0 < sequence.count ? sequence[$0] : nil }
            default: return nil
            }
        }
        return current
    }
}
