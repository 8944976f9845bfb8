import ACBClient

extension BoxSealer {
    /// The two ends of a conversation between two new key pairs: what the first seals, the second
    /// opens, and back.
    static func pair() -> (BoxSealer, BoxSealer) {
        let (first, second) = (AgentKeys.generate(), AgentKeys.generate())
        return (BoxSealer(own: first, peer: second.publicKeys), BoxSealer(own: second, peer: first.publicKeys))
    }
}
