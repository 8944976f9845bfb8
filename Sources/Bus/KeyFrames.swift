import Crypto
public import NIOCore

/// An agent's public keys for end-to-end encryption (docs/protocol.md 5.16): X25519 to seal to it,
/// Ed25519 to check what it signed. The private halves never leave the agent.
public struct PublicKeys: Sendable, Hashable {
    /// Bytes of each key.
    public static let keyBytes = 32
    /// Bytes of an Ed25519 signature.
    public static let signatureBytes = 64

    /// X25519 public key (libsodium `crypto_box`).
    public var boxKey: [UInt8]
    /// Ed25519 public key (libsodium `crypto_sign`).
    public var signKey: [UInt8]

    public init(boxKey: [UInt8], signKey: [UInt8]) {
        self.boxKey = boxKey
        self.signKey = signKey
    }

    /// What people compare out of band: the first 16 bytes of SHA-256 over the box key then the
    /// signing key, in lowercase hex, in groups of four joined by `:`.
    public var fingerprint: String {
        let digest = Array(SHA256.hash(data: boxKey + signKey).prefix(16))
        return stride(from: 0, to: digest.count, by: 2).map { digest[$0..<$0 + 2].lowercaseHex }.joined(separator: ":")
    }

    /// What a rotation signs with the previous signing key: a fixed label, then the new box key and
    /// the new signing key.
    public var rotationMessage: [UInt8] { Array("acb.key.rotate.v1".utf8) + boxKey + signKey }

    init(reading r: inout WireReader) throws(BusError) {
        self.init(boxKey: try r.fixed(Self.keyBytes, "box_key"), signKey: try r.fixed(Self.keyBytes, "sign_key"))
    }

    func write(to b: inout ByteBuffer) {
        precondition(boxKey.count == Self.keyBytes && signKey.count == Self.keyBytes, "keys must be 32 bytes")
        b.writeBytes(boxKey)
        b.writeBytes(signKey)
    }
}

/// What the bus holds for an agent's keys: the current pair, how it replaced the one before, and
/// whether an operator revoked it.
public struct PublishedKeys: Sendable, Equatable {
    public var keys: PublicKeys
    /// Empty, or the previous signing key's signature over ``PublicKeys/rotationMessage``.
    public var rotation: [UInt8]
    /// Empty, or the signing key the rotation was checked against.
    public var previousSignKey: [UInt8]
    /// An operator revoked these keys: no one should seal to them or trust what they signed.
    public var revoked: Bool
    /// When they were published, Unix ms.
    public var publishedMs: UInt64

    public init(
        keys: PublicKeys, rotation: [UInt8] = [], previousSignKey: [UInt8] = [], revoked: Bool = false,
        publishedMs: UInt64
    ) {
        self.keys = keys
        self.rotation = rotation
        self.previousSignKey = previousSignKey
        self.revoked = revoked
        self.publishedMs = publishedMs
    }
}

/// KEY_PUBLISH: the sender's public keys. Answered OK; refused with `forbidden` when it has other,
/// unrevoked keys and `rotation` is not their signature over the new ones.
public struct KeyPublish: FrameBody {
    public var ref: UInt64
    public var keys: PublicKeys
    /// Empty for a first publication (or after a revocation), else 64 bytes: the current signing
    /// key's signature over the new keys' ``PublicKeys/rotationMessage``.
    public var rotation: [UInt8]

    public init(ref: UInt64, keys: PublicKeys, rotation: [UInt8] = []) {
        self.ref = ref
        self.keys = keys
        self.rotation = rotation
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"), keys: try PublicKeys(reading: &r), rotation: try r.signature("rotation"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        keys.write(to: &b)
        b.writeWireBytes(ByteBuffer(bytes: rotation))
    }
}

/// KEY_FETCH: the published keys of an agent of the caller's tenant. Answered with KEY, or ERROR
/// `no_key`.
public struct KeyFetch: FrameBody {
    public var ref: UInt64
    public var agentID: String

    public init(ref: UInt64, agentID: String) {
        self.ref = ref
        self.agentID = agentID
    }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"), agentID: try r.string("agent_id"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(agentID)
    }
}

/// KEY: the answer to KEY_FETCH.
public struct KeyInfo: FrameBody {
    public var ref: UInt64
    public var agentID: String
    public var published: PublishedKeys

    public init(ref: UInt64, agentID: String, published: PublishedKeys) {
        self.ref = ref
        self.agentID = agentID
        self.published = published
    }

    public init(reading r: inout WireReader) throws(BusError) {
        let ref = try r.u64("ref")
        let agentID = try r.string("agent_id")
        let keys = try PublicKeys(reading: &r)
        let rotation = try r.signature("rotation")
        let previous = Array(buffer: try r.bytes("previous_sign_key"))
        guard previous.isEmpty || previous.count == PublicKeys.keyBytes else {
            throw BusError(.badFrame, "previous_sign_key must be empty or 32 bytes")
        }
        let revoked = try r.u8("revoked")
        guard revoked <= 1 else { throw BusError(.badFrame, "revoked must be 0 or 1") }
        self.init(
            ref: ref, agentID: agentID,
            published: PublishedKeys(
                keys: keys, rotation: rotation, previousSignKey: previous, revoked: revoked == 1,
                publishedMs: try r.u64("published_ms")))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
        b.writeWireString(agentID)
        published.keys.write(to: &b)
        b.writeWireBytes(ByteBuffer(bytes: published.rotation))
        b.writeWireBytes(ByteBuffer(bytes: published.previousSignKey))
        b.writeMultipleIntegers(UInt8(published.revoked ? 1 : 0), published.publishedMs)
    }
}

extension WireReader {
    /// A `bytes` field that is empty or one Ed25519 signature.
    mutating func signature(_ field: String) throws(BusError) -> [UInt8] {
        let bytes = Array(buffer: try self.bytes(field))
        guard bytes.isEmpty || bytes.count == PublicKeys.signatureBytes else {
            throw BusError(.badFrame, "\(field) must be empty or \(PublicKeys.signatureBytes) bytes")
        }
        return bytes
    }
}

extension Collection<UInt8> {
    /// The bytes in lowercase hex, two digits each.
    public var lowercaseHex: String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }, as: UTF8.self)
    }
}
