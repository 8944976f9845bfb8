import Bus
import NIOCore

/// Sealed contexts (docs/protocol.md 5.16): the body is encrypted under a per-context key, which
/// each reader gets wrapped for it (`crypto_box_seal`) in the body itself; the writer signs the
/// whole. The bus keeps versions, history, expiry and watches of heads, but cannot read bodies:
/// it refuses patches and field-level watches (`sealed_body`), so change them here, with
/// ``updateSealed(_:options:_:)``.
extension ACBClient {
    /// Puts a sealed context for this agent, `options.readers` and `options.writers` (its scope
    /// must name them: not `tenant`).
    ///
    /// The key stays while readers are only added; dropping one makes a new key (the next epoch),
    /// so it cannot open the versions written after.
    /// - Parameter expectedVersion: the version this write replaces; by default the one it read
    ///   to find the key, so a concurrent change is refused with `version_conflict`, not lost.
    @discardableResult
    public func shareSealed(
        _ id: String, _ body: some ContextBody, options: ContextOptions = ContextOptions(),
        expectedVersion: UInt64? = nil
    ) async throws -> ContextHead {
        guard options.scope != .tenant, let me = welcome?.agentID else {
            throw SealError(.needsAgent, "a sealed context names its readers: scope tenant cannot be sealed")
        }
        let readers = Set([me] + options.readers + options.writers).sorted()
        var current: (version: UInt64, epoch: UInt32, key: [UInt8], readers: Set<String>)?
        do {
            let context = try await get(id)
            if context.head.attributes.contentType == .sealed {
                let opened = try await openContextKey(context)
                current = (context.version, opened.epoch, opened.key, opened.readers)
            } else {
                current = (context.version, 0, [], [])
            }
        } catch let error as BusError where error.code == .unknownContext || error.code == .contextExpired {
            current = nil
        }
        var (epoch, key) = (current?.epoch ?? 0, current?.key ?? [])
        if key.isEmpty || !Set(readers).isSuperset(of: current?.readers ?? []) {
            (epoch, key) = (epoch + 1, Sodium.random(Sodium.keyBytes))
        }
        let own = try keyRing.own()
        var head = SealedFormat.header(.context)
        head.append(integer: epoch)
        head += SealedFormat.keyID(own.publicKeys.signKey)
        head.append(integer: UInt16(readers.count))
        for reader in readers {
            head.append(shortString: reader)
            head += Sodium.seal(key, to: try await peerKeys(reader).boxKey)
        }
        let sealed = SealedFormat.signedAEAD(
            head: head, data: Array(id.utf8), content: Array(body.contextBytes.readableBytesView), key: key,
            signer: own)
        var sealedOptions = options
        sealedOptions.contentType = .sealed
        return try await write(
            current == nil ? .create : .update, id, expectedVersion: expectedVersion ?? current?.version,
            ttlMs: options.ttlMs, attributes: sealedOptions.attributes, body: ByteBuffer(bytes: sealed))
    }

    /// The latest version of a sealed context (or version `version`), its body opened.
    /// - Throws: the codes of ``get(_:version:)``; ``SealError`` `wrong_key` when it was not sealed
    ///   for this agent, `wrong_sender` when its writer did not sign it, `tampered`.
    public func getSealed(_ id: String, version: UInt64? = nil) async throws -> SharedContext {
        try await openSealed(try await get(id, version: version))
    }

    /// `context` (from ``get(_:version:)``, a list or a watch event) with its sealed body opened.
    public func openSealed(_ context: SharedContext) async throws -> SharedContext {
        guard context.head.attributes.contentType == .sealed else {
            throw SealError(.notSealed, "\(context.id) is not a sealed context")
        }
        let (_, key, _, signer, reader) = try await openContextKey(context)
        let signKey = try await signKey(of: context.head.updatedBy, named: signer)
        let body = try SealedFormat.openSignedAEAD(
            reader.bytes, at: reader, data: Array(context.id.utf8), key: key, signKey: signKey)
        return SharedContext(head: context.head, body: ByteBuffer(bytes: body))
    }

    /// Reads, changes and writes back a sealed context until no one else wrote it in between
    /// (compare and set on its version): the bus cannot patch what it cannot read.
    @discardableResult
    public func updateSealed(
        _ id: String, options: ContextOptions = ContextOptions(),
        _ change: (SharedContext) throws -> ByteBuffer
    ) async throws -> ContextHead {
        while true {
            let current = try await getSealed(id)
            do {
                return try await shareSealed(
                    id, try change(current), options: options, expectedVersion: current.version)
            } catch let error as BusError where error.code == .versionConflict {
                continue
            }
        }
    }

    /// The key of a sealed body, unwrapped with this agent's keys.
    /// - Returns: its epoch, the key, the readers it was wrapped for, the signer's key id, and a
    ///   reader at the body's nonce.
    private func openContextKey(_ context: SharedContext) async throws -> (
        epoch: UInt32, key: [UInt8], readers: Set<String>, signer: [UInt8], reader: SealedFormat.Reader
    ) {
        let sealed = Array(context.body.readableBytesView)
        guard SealedFormat.kind(of: sealed) == .context else {
            throw SealError(.malformed, "the body of \(context.id) is not a sealed context body")
        }
        guard let me = welcome?.agentID else { throw ClientConnection.closedError }
        var reader = SealedFormat.Reader(sealed, skipping: 4)
        let epoch = try reader.integer(UInt32.self)
        let signer = Array(try reader.take(SealedFormat.keyIDBytes))
        var readers: Set<String> = []
        var wrapped: ArraySlice<UInt8>?
        for _ in 0..<(try reader.integer(UInt16.self)) {
            let agent = try reader.string()
            let entry = try reader.take(Sodium.keyBytes + Sodium.sealOverhead)
            readers.insert(agent)
            if agent == me { wrapped = entry }
        }
        guard let wrapped else { throw SealError(.wrongKey, "\(context.id) is not sealed for \(me)") }
        for own in keyRing.ownKeys {
            if let key = Sodium.sealOpen(wrapped, publicKey: own.publicKeys.boxKey, secret: own.boxSecret) {
                return (epoch, key, readers, signer, reader)
            }
        }
        throw SealError(.wrongKey, "the key of \(context.id) was wrapped for other keys than this agent's")
    }
}
