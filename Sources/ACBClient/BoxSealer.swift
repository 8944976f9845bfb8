public import Bus

/// Boxes between one agent's keys and a peer's (docs/protocol.md 5.16, kind 1) with no
/// connection: the bytes `send(…, sealed: .box)` and `request(…, sealed: true)` put on the wire,
/// for an application or a harness that carries payloads itself and has the peer's keys (compare
/// their ``PublicKeys/fingerprint`` out of band). The X25519 key the two share is computed once.
public struct BoxSealer: Sendable {
    let own: AgentKeys
    let peer: PublicKeys
    private let shared: [UInt8]

    public init(own: AgentKeys, peer: PublicKeys) {
        self.own = own
        self.peer = peer
        shared = Sodium.sharedKey(peer.boxKey, secret: own.boxSecret)
    }

    /// `payload` sealed as a message.
    public func seal(_ payload: [UInt8]) -> [UInt8] {
        SealedFormat.box(payload, purpose: .message, to: peer, from: own, shared: shared).sealed
    }

    /// `payload` sealed as a request, and the nonce its reply is bound to.
    public func sealRequest(_ payload: [UInt8]) -> (sealed: [UInt8], nonce: [UInt8]) {
        SealedFormat.box(payload, purpose: .request, to: peer, from: own, shared: shared)
    }

    /// `payload` sealed as the reply to the request whose nonce is `nonce`.
    public func sealReply(_ payload: [UInt8], to nonce: [UInt8]) -> [UInt8] {
        SealedFormat.box(payload, purpose: .reply, binding: nonce, to: peer, from: own, shared: shared).sealed
    }

    /// Opens a sealed message.
    /// - Throws: ``SealError`` `not_sealed`, `wrong_key`, `wrong_sender`, `tampered`; `malformed`
    ///   for a box that is not a message.
    public func open(_ sealed: [UInt8]) throws(SealError) -> [UInt8] {
        Array(try opened(sealed, as: .message).content)
    }

    /// Opens a sealed request: its payload and the nonce to reply to.
    public func openRequest(_ sealed: [UInt8]) throws(SealError) -> (payload: [UInt8], nonce: [UInt8]) {
        let (nonce, content) = try opened(sealed, as: .request)
        return (Array(content), nonce)
    }

    /// Opens the reply to the request sealed with `nonce`.
    public func openReply(_ sealed: [UInt8], nonce: [UInt8]) throws(SealError) -> [UInt8] {
        Array(try SealedFormat.replyContent(try opened(sealed, as: .reply).content, nonce: nonce))
    }

    private func opened(_ sealed: [UInt8], as expected: SealedFormat.Purpose) throws(SealError) -> (
        nonce: [UInt8], content: ArraySlice<UInt8>
    ) {
        guard SealedFormat.kind(of: sealed) == .box else { throw SealError(.notSealed, "not a sealed box") }
        let (purpose, nonce, content) = try SealedFormat.openBox(sealed, from: peer, own: own, shared: shared)
        guard purpose == expected else { throw SealError(.malformed, "a sealed \(purpose), not a \(expected)") }
        return (nonce, content)
    }
}
