import Bus
import Foundation
import NIOCore

/// How a payload is sealed end to end (docs/protocol.md 5.16).
public enum Sealing: Sendable {
    /// `crypto_box`: only the receiver opens it, and it knows this agent wrote it.
    case box
    /// `crypto_box_seal`: only the receiver opens it, and it cannot tell who wrote it.
    case anonymous
}

/// Who sealed a delivery the client opened.
public enum SealedBy: Sendable, Equatable {
    /// The agent named in `from`, checked against its pinned keys.
    case agent
    /// Someone the receiver cannot name (``Sealing/anonymous``).
    case anonymous
    /// A member of group `id` (`owner/name`): the agent in `from`, checked by its signature.
    case group(String)
}

/// A delivery the client refused to open: it was NACKed (so it is delivered again, and dead-lettered
/// after the last attempt) and never handed to the application.
public struct SealingFailure: Sendable {
    public var from: String
    public var deliveryID: UInt64
    public var error: SealError
}

extension ACBClient {
    /// This agent's key fingerprint (``PublicKeys/fingerprint``), nil without keys.
    public var keyFingerprint: String? { try? keyRing.own().publicKeys.fingerprint }

    /// The fingerprint of `agent`'s keys as this client pins them, fetched (and pinned on first
    /// use) from the bus: compare it out of band with the one the agent shows.
    /// - Throws: ``SealError`` `key_changed`, `key_revoked`; ``BusError`` `no_key`.
    public func keyFingerprint(of agent: String) async throws -> String {
        try await peerKeys(agent, refresh: true).fingerprint
    }

    /// Pins `agent`'s keys as the bus has them now, if their fingerprint is `fingerprint`: what to do
    /// after `key_changed`, once the new fingerprint is checked out of band.
    public func trustKeys(of agent: String, fingerprint: String) async throws {
        let info = try await fetchKeys(agent)
        guard !info.published.revoked else {
            throw SealError(.keyRevoked, "an operator revoked the keys of \(agent)")
        }
        guard info.published.keys.fingerprint == fingerprint else {
            throw SealError(
                .keyChanged, "the bus has \(info.published.keys.fingerprint) for \(agent), not \(fingerprint)")
        }
        keyRing.pin(info.published.keys, for: agent)
    }

    /// Forgets the keys pinned for `agent`: the next ones the bus hands out are pinned on first use.
    public func forgetKeys(of agent: String) {
        keyRing.forget(agent)
    }

    /// Replaces this agent's keys with `next`, signed by the current ones so that every peer
    /// accepts them; what was sealed to the old keys still opens. Save `next` for the next start:
    /// ``AgentKeys/write(to:)`` to a new file, then rename it over the old one.
    public func rotateKeys(to next: AgentKeys) async throws {
        let current = try keyRing.own()
        _ = try await call {
            .keyPublish(
                KeyPublish(ref: $0, keys: next.publicKeys, rotation: current.rotationSignature(for: next.publicKeys)))
        }
        keyRing.rotated(to: next)
    }

    /// Deliveries this client refused to open; the newest ``maxSealingFailures`` are kept until read.
    public var sealingFailures: AsyncStream<SealingFailure> { failureInbox.stream }

    /// Refusals ``sealingFailures`` keeps for an application that does not read them.
    public static let maxSealingFailures = 1_024

    // MARK: internals

    /// KEY_PUBLISH of this agent's keys on a new connection (a no-op for the bus when unchanged).
    func publishKeys(on connection: ClientConnection) async throws {
        guard let own = try? keyRing.own() else { return }
        _ = try await connection.call { .keyPublish(KeyPublish(ref: $0, keys: own.publicKeys)) }
    }

    /// The keys of `agent`: pinned ones checked against the bus within
    /// ``ClientConfiguration/keyCheckIntervalMs``, else fetched and checked now.
    func peerKeys(_ agent: String, refresh: Bool = false) async throws -> PublicKeys {
        if !refresh, let pinned = keyRing.pinned(agent, maxAgeMs: configuration.keyCheckIntervalMs) { return pinned }
        return try keyRing.accept(try await fetchKeys(agent))
    }

    /// KEY_FETCH of `agent`. - Throws: `key_changed` when the answer is about another agent (a
    /// bus that lies would pin its own keys under a name nobody checks).
    private func fetchKeys(_ agent: String) async throws -> KeyInfo {
        let frame = try await call { .keyFetch(KeyFetch(ref: $0, agentID: agent)) }
        guard case .key(let info) = frame else { throw Self.unexpected(frame) }
        guard info.agentID == agent else {
            throw SealError(
                .keyChanged, "asked for the keys of \(agent), the bus answered with those of \(info.agentID)")
        }
        return info
    }

    /// The signing key of `agent` if its id is `keyID` (fetched again once if not: it may have rotated).
    /// - Throws: `wrong_sender` when the agent's keys are others.
    func signKey(of agent: String, named keyID: [UInt8]) async throws -> [UInt8] {
        var keys = try await peerKeys(agent)
        if SealedFormat.keyID(keys.signKey) != keyID { keys = try await peerKeys(agent, refresh: true) }
        guard SealedFormat.keyID(keys.signKey) == keyID else {
            throw SealError(.wrongSender, "not signed by the keys of \(agent)")
        }
        return keys.signKey
    }

    /// `payload` sealed for agent `target`.
    /// - Returns: the sealed bytes and, for a box, its nonce (a reply is bound to it).
    func seal(_ payload: ByteBuffer, to target: Target, _ sealing: Sealing, purpose: SealedFormat.Purpose)
        async throws -> (payload: ByteBuffer, nonce: [UInt8])
    {
        guard target.kind == .agent else {
            throw SealError(.needsAgent, "sealing needs an agent by id: a capability names no keys")
        }
        let own = try keyRing.own()
        let recipient = try await peerKeys(target.name)
        let plain = Array(payload.readableBytesView)
        switch sealing {
        case .box:
            let (sealed, nonce) = SealedFormat.box(plain, purpose: purpose, to: recipient, from: own)
            return (ByteBuffer(bytes: sealed), nonce)
        case .anonymous:
            return (ByteBuffer(bytes: SealedFormat.anonymous(plain, purpose: purpose, to: recipient)), [])
        }
    }

    /// Opens a box from `agent`, with this agent's current keys or those before a rotation, and
    /// the sender's keys fetched again once if the box names others (it may have rotated).
    func openBox(_ sealed: [UInt8], from agent: String) async throws -> (
        purpose: SealedFormat.Purpose, nonce: [UInt8], content: ArraySlice<UInt8>
    ) {
        var sender = try await peerKeys(agent)
        if let named = SealedFormat.boxSender(sealed), named != SealedFormat.keyID(sender.boxKey) {
            sender = try await peerKeys(agent, refresh: true)
        }
        return try withOwnKeys { own in try SealedFormat.openBox(sealed, from: sender, own: own) }
    }

    /// `open` with this agent's current keys, then with those before its last rotation if the
    /// payload was sealed for other keys.
    func withOwnKeys<T>(_ open: (AgentKeys) throws -> T) throws -> T {
        var failure: any Error = SealError(.invalidKeys, "this client has no keys (ClientConfiguration.keys)")
        for own in keyRing.ownKeys {
            do {
                return try open(own)
            } catch let error as SealError where error.code == .wrongKey {
                failure = error
            }
        }
        throw failure
    }

    /// The delivery with its payload opened, nil for one the client keeps (a group key).
    /// - Throws: ``SealError`` for what it refuses.
    func opened(_ delivery: Delivery) async throws -> Delivery? {
        let sealed = Array(delivery.payload.readableBytesView)
        guard let kind = SealedFormat.kind(of: sealed) else {
            guard !configuration.requireSealed else {
                throw SealError(.notSealed, "a plaintext \(delivery.kind) from \(delivery.from)")
            }
            return delivery
        }
        let expected: SealedFormat.Purpose = delivery.kind == .request ? .request : .message
        switch kind {
        case .box:
            let (purpose, nonce, content) = try await openBox(sealed, from: delivery.from)
            if purpose == .groupKey, delivery.kind == .direct {
                try keepGroupKey(content, from: delivery.from)
                return nil
            }
            guard purpose == expected else {
                throw SealError(.malformed, "a sealed \(purpose) delivered as a \(delivery.kind)")
            }
            return delivery.opened(content, by: .agent, nonce: nonce)
        case .anonymous:
            let (purpose, content) = try withOwnKeys { own in try SealedFormat.openAnonymous(sealed, own: own) }
            guard purpose == expected, purpose != .request else {
                throw SealError(
                    .malformed,
                    "an anonymous \(purpose) delivered as a \(delivery.kind): a request must be a box, its reply is bound to it"
                )
            }
            return delivery.opened(content, by: .anonymous, nonce: nil)
        case .group:
            guard delivery.kind != .request else {
                throw SealError(.malformed, "a group message delivered as a request: its reply could not be sealed")
            }
            let (group, content) = try await openGroupMessage(sealed, from: delivery.from)
            return delivery.opened(content[...], by: .group(group), nonce: nil)
        case .context, .stream:
            throw SealError(.malformed, "a sealed \(kind) is not a message")
        }
    }

    /// Opens deliveries in the order they came and routes them; a refused one is NACKed and reported.
    func openDeliveries(_ deliveries: AsyncStream<Delivery>) async {
        for await delivery in deliveries {
            // Its connection closed while it waited: the bus delivers it again on the next.
            guard !delivery.connection.isClosed else { continue }
            do {
                guard let opened = try await opened(delivery) else {
                    delivery.ack()  // a group's key, kept
                    continue
                }
                // Closed while its sender's keys were fetched: the bus delivers it again.
                if !delivery.connection.isClosed { route(opened) }
            } catch {
                let failure = Self.sealingFailure(error)
                // Keys that could not be fetched are not the payload's fault: left unacknowledged,
                // it comes again after the ack timeout. Anything else is refused.
                if failure.code != .keysUnavailable { delivery.nack() }
                failureInbox.continuation.yield(
                    SealingFailure(from: delivery.from, deliveryID: delivery.deliveryID, error: failure))
            }
        }
    }

    /// What an error met while opening a delivery or a stream says of it: a sender with no keys
    /// cannot have sealed it (`wrong_sender`); the bus's other errors, met fetching keys, are
    /// `keys_unavailable`; anything else (a file that cannot be read) is `malformed`.
    static func sealingFailure(_ error: any Error) -> SealError {
        switch error {
        case let error as SealError: error
        case let error as BusError where error.code == .noKey: SealError(.wrongSender, "the sender has no keys")
        case let error as BusError: SealError(.keysUnavailable, "\(error)")
        default: SealError(.malformed, "\(error)")
        }
    }

    /// A request's reply, sealed back to the requester if the request was sealed.
    func sealedReply(_ payload: ByteBuffer, to request: Delivery) throws -> ByteBuffer {
        guard let nonce = request.requestNonce else { return payload }
        let requester = try keyRingPinned(request.from)
        let (sealed, _) = SealedFormat.box(
            Array(payload.readableBytesView), purpose: .reply, binding: nonce, to: requester, from: try keyRing.own())
        return ByteBuffer(bytes: sealed)
    }

    /// The requester's keys: opening its request just pinned them.
    private func keyRingPinned(_ agent: String) throws -> PublicKeys {
        guard let keys = keyRing.pinned(agent, maxAgeMs: .max) else {
            throw SealError(.keyChanged, "no keys pinned for \(agent)")
        }
        return keys
    }

    /// Opens the answer to a request sealed with box nonce `nonce` for agent `agent`.
    /// - Throws: `wrong_sender` when another agent answered (the nonce travels in clear).
    func openReply(_ response: Response, from agent: String, nonce: [UInt8]) async throws -> ByteBuffer {
        guard response.from == agent else {
            throw SealError(.wrongSender, "the sealed request to \(agent) was answered by \(response.from)")
        }
        let sealed = Array(response.payload.readableBytesView)
        guard SealedFormat.kind(of: sealed) == .box else {
            throw SealError(.notSealed, "the reply of \(response.from) to a sealed request is not sealed")
        }
        let (purpose, _, content) = try await openBox(sealed, from: response.from)
        guard purpose == .reply else { throw SealError(.malformed, "a sealed \(purpose), not a reply") }
        return ByteBuffer(bytes: try SealedFormat.replyContent(content, nonce: nonce))
    }
}

extension Delivery {
    /// This delivery with `content` as its payload, opened.
    func opened(_ content: ArraySlice<UInt8>, by sealer: SealedBy, nonce: [UInt8]?) -> Delivery {
        var frame = self.frame
        frame.payload = ByteBuffer(bytes: content)
        return Delivery(frame, connection: connection, sealedBy: sealer, requestNonce: nonce)
    }
}
