public import Bus
import Crypto
import NIOPosix
import Synchronization

/// Where published keys outlive the bus (PostgreSQL). Calls block; the ``KeyDirectory`` makes
/// them from a thread of its own.
public protocol KeyStorage: Sendable {
    /// The keys `agent` published, nil when none.
    func keys(of agent: AgentKey) throws -> PublishedKeys?
    /// Creates or replaces the keys of `agent`.
    func save(_ keys: PublishedKeys, for agent: AgentKey) throws
}

/// The agents' public keys for end-to-end encryption (docs/protocol.md 5.16): what KEY_PUBLISH
/// stores and KEY_FETCH and the admin API read.
///
/// The bus cannot read what is sealed with them; what it guards is that keys change only as their
/// owner or an operator says: a new pair must be signed by the current one (a rotation) unless an
/// operator revoked it. Clients check the same themselves, since they need not trust the bus.
///
/// Reads are served from memory after the first; every change runs on one thread, so a check and
/// the write it allows cannot interleave with another change, and is in storage before it is
/// answered.
public final class KeyDirectory: Sendable {
    private let cache = Mutex<[AgentKey: PublishedKeys]>([:])
    private let storage: (any KeyStorage)?
    private let thread = NIOThreadPool(numberOfThreads: 1)

    public init(storage: (any KeyStorage)?) {
        self.storage = storage
        thread.start()
    }

    /// Stops its thread, after the change in progress; later changes and uncached reads answer
    /// `shutting_down`.
    public func close() async {
        try? await thread.shutdownGracefully()
    }

    /// The keys `agent` published, nil when none.
    /// - Throws: `storage_unavailable` when they are not in memory and storage cannot be read.
    public func keys(of agent: AgentKey) async throws(BusError) -> PublishedKeys? {
        if let known = cached(agent) { return known }
        return try await serially { () throws(BusError) in try self.load(agent) }
    }

    /// The keys `agent` published if they are in memory: no wait, no storage.
    public func cached(_ agent: AgentKey) -> PublishedKeys? {
        cache.withLock { $0[agent] }
    }

    /// Publishes `keys` for `agent`: again the same ones is a no-op; others replace the current
    /// ones only with `rotation`, their current signing key's signature over the new ones, or once
    /// the current ones are revoked.
    /// - Returns: the keys now published and whether they changed.
    /// - Throws: `forbidden` for a change without a valid rotation or a revoked pair published again,
    ///   `storage_unavailable`.
    public func publish(_ keys: PublicKeys, rotation: [UInt8], for agent: AgentKey) async throws(BusError)
        -> (published: PublishedKeys, changed: Bool)
    {
        try await serially { () throws(BusError) in
            let current = try self.load(agent)
            if let current, current.keys == keys {
                guard !current.revoked else { throw BusError(.forbidden, "these keys were revoked") }
                return (current, false)
            }
            var published = PublishedKeys(keys: keys, publishedMs: WallClock.nowMs())
            if let current, !current.revoked {
                guard Self.verify(rotation, of: keys, by: current.keys.signKey) else {
                    throw BusError(
                        .forbidden,
                        "the agent has other keys: a new pair must carry their signature (rotation), or an operator must revoke them first"
                    )
                }
                published.rotation = rotation
                published.previousSignKey = current.keys.signKey
            }
            try self.store(published, for: agent)
            return (published, true)
        }
    }

    /// Marks the keys of `agent` revoked: KEY says so, and the agent may publish a new pair
    /// without a rotation.
    /// - Returns: the keys revoked, nil when the agent has none.
    public func revoke(_ agent: AgentKey) async throws(BusError) -> PublishedKeys? {
        try await serially { () throws(BusError) in
            guard var keys = try self.load(agent) else { return nil }
            keys.revoked = true
            try self.store(keys, for: agent)
            return keys
        }
    }

    /// Whether `signature` is a valid Ed25519 signature of `keys`' rotation message by `signKey`.
    static func verify(_ signature: [UInt8], of keys: PublicKeys, by signKey: [UInt8]) -> Bool {
        guard signature.count == PublicKeys.signatureBytes,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: signKey)
        else { return false }
        return key.isValidSignature(signature, for: keys.rotationMessage)
    }

    private func load(_ agent: AgentKey) throws(BusError) -> PublishedKeys? {
        if let known = cache.withLock({ $0[agent] }) { return known }
        guard let storage else { return nil }
        let stored: PublishedKeys?
        do {
            stored = try storage.keys(of: agent)
        } catch {
            throw BusError(.storageUnavailable, "cannot read keys: \(error)", retryAfterMs: 1000)
        }
        if let stored { cache.withLock { $0[agent] = stored } }
        return stored
    }

    private func store(_ keys: PublishedKeys, for agent: AgentKey) throws(BusError) {
        do {
            try storage?.save(keys, for: agent)
        } catch {
            throw BusError(.storageUnavailable, "cannot store keys: \(error)", retryAfterMs: 1000)
        }
        cache.withLock { $0[agent] = keys }
    }

    /// Runs `body` on the directory's thread.
    private func serially<T: Sendable>(_ body: @escaping @Sendable () throws(BusError) -> T) async throws(BusError)
        -> T
    {
        let result: Result<T, BusError>
        do {
            result = try await thread.runIfActive { () -> Result<T, BusError> in
                do throws(BusError) { return .success(try body()) } catch { return .failure(error) }
            }
        } catch {
            throw BusError(.shuttingDown, "the server is shutting down")
        }
        return try result.get()
    }
}
