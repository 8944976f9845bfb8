import Bus
import Synchronization

/// The layouts of sealed payloads, bodies and streams (docs/protocol.md 5.16). Each starts with
/// ``magic`` and a ``Kind`` byte; integers are big-endian; a key id is the first 8 bytes of a
/// public key.
enum SealedFormat {
    static let magic: [UInt8] = [0xAC, 0x5E, 0x01]
    static let keyIDBytes = 8

    enum Kind: UInt8 {
        /// `crypto_box` from one agent to another.
        case box = 1
        /// `crypto_box_seal` to an agent, from no one it can name.
        case anonymous = 2
        /// A group's key (XChaCha20-Poly1305), signed by the member who wrote it.
        case group = 3
        /// A context body under a per-context key wrapped for each reader, signed by its writer.
        case context = 4
        /// The header of a stream encrypted with `crypto_secretstream`.
        case stream = 5
    }

    /// What a sealed box holds, inside the encryption, so the bus cannot pass one off as another.
    enum Purpose: UInt8 {
        case message = 1
        case request = 2
        /// Followed by the request's 24-byte nonce: a reply opens only for its own request.
        case reply = 3
        /// A group key: name (`u8` length, UTF-8), epoch `u32`, key (32 bytes).
        case groupKey = 4
        /// A sealed stream's header: key (32 bytes), `crypto_secretstream` header (24), plaintext
        /// bytes per message `u32`, plaintext size `u64`.
        case streamKey = 5
    }

    /// Bytes of a sealed stream's header: a box (kind ``Kind/stream``) of a ``Purpose/streamKey``.
    static let streamHeaderBytes = 4 + 2 * keyIDBytes + Sodium.nonceBytes + Sodium.boxOverhead + 1 + 32 + 24 + 4 + 8

    /// The kind of a sealed payload, nil for anything else.
    static func kind(of bytes: some Collection<UInt8>) -> Kind? {
        guard bytes.count > magic.count, bytes.starts(with: magic) else { return nil }
        return Kind(rawValue: bytes[bytes.index(bytes.startIndex, offsetBy: magic.count)])
    }

    static func keyID(_ key: [UInt8]) -> [UInt8] { Array(key.prefix(keyIDBytes)) }

    static func header(_ kind: Kind) -> [UInt8] { magic + [kind.rawValue] }

    // MARK: box

    /// A box from `sender` to `recipient`: header, sender and recipient key ids, nonce, box.
    /// - Parameter shared: the two's ``sharedKey(_:own:)``, when the caller keeps it.
    static func box(
        _ payload: [UInt8], purpose: Purpose, binding: [UInt8] = [], to recipient: PublicKeys, from sender: AgentKeys,
        shared: [UInt8]? = nil
    ) -> (sealed: [UInt8], nonce: [UInt8]) {
        let nonce = Sodium.nonce()
        var plain: [UInt8] = []
        plain.reserveCapacity(1 + binding.count + payload.count)
        plain.append(purpose.rawValue)
        plain += binding
        plain += payload
        var sealed = header(.box)
        sealed.reserveCapacity(4 + 2 * keyIDBytes + nonce.count + plain.count + Sodium.boxOverhead)
        sealed += sender.publicKeys.boxKey.prefix(keyIDBytes)
        sealed += recipient.boxKey.prefix(keyIDBytes)
        sealed += nonce
        Sodium.box(
            plain, nonce: nonce, shared: shared ?? sharedKey(recipient.boxKey, own: sender), appendingTo: &sealed)
        return (sealed, nonce)
    }

    /// The sender's key id a box names (nil: not a box).
    static func boxSender(_ sealed: [UInt8]) -> [UInt8]? {
        guard kind(of: sealed) == .box, sealed.count >= 4 + keyIDBytes else { return nil }
        return Array(sealed[4..<4 + keyIDBytes])
    }

    /// Opens a box `sender` sealed to `own`.
    /// - Parameter shared: the two's ``sharedKey(_:own:)``, when the caller keeps it.
    /// - Returns: its purpose, the box's nonce and what it holds after the purpose.
    static func openBox(_ sealed: [UInt8], from sender: PublicKeys, own: AgentKeys, shared: [UInt8]? = nil)
        throws(SealError) -> (purpose: Purpose, nonce: [UInt8], content: ArraySlice<UInt8>)
    {
        var reader = Reader(sealed, skipping: 4)
        let senderID = try reader.take(keyIDBytes)
        let recipientID = try reader.take(keyIDBytes)
        let nonce = Array(try reader.take(Sodium.nonceBytes))
        guard recipientID.elementsEqual(own.publicKeys.boxKey.prefix(keyIDBytes)) else {
            throw SealError(.wrongKey, "sealed to other keys than this agent's")
        }
        guard senderID.elementsEqual(sender.boxKey.prefix(keyIDBytes)) else {
            throw SealError(.wrongSender, "not sealed by the sender's keys")
        }
        let key = shared ?? sharedKey(sender.boxKey, own: own)
        guard let opened = Sodium.boxOpen(reader.rest, nonce: nonce, shared: key),
            let first = opened.first, let purpose = Purpose(rawValue: first)
        else { throw SealError(.tampered, "the sealed payload does not authenticate") }
        return (purpose, nonce, opened.dropFirst())
    }

    /// What a reply box holds after the nonce of the request it answers.
    /// - Throws: `malformed` when it answers another request.
    static func replyContent(_ content: ArraySlice<UInt8>, nonce: [UInt8]) throws(SealError) -> ArraySlice<UInt8> {
        guard content.starts(with: nonce) else { throw SealError(.malformed, "not the reply to this request") }
        return content.dropFirst(nonce.count)
    }

    /// The boxes' shared keys, by own and peer public key: each costs an X25519 to compute, tens
    /// of microseconds, many times what a box of a small payload costs with it. At most
    /// ``sharedKeyLimit``; a full cache starts over.
    private static let sharedKeys = Mutex<[[UInt8]: [UInt8]]>([:])
    static let sharedKeyLimit = 4_096

    static func sharedKey(_ peer: [UInt8], own: AgentKeys) -> [UInt8] {
        let pair = own.publicKeys.boxKey + peer
        if let known = sharedKeys.withLock({ $0[pair] }) { return known }
        let key = Sodium.sharedKey(peer, secret: own.boxSecret)
        sharedKeys.withLock {
            if $0.count >= sharedKeyLimit { $0.removeAll() }
            $0[pair] = key
        }
        return key
    }

    // MARK: anonymous

    static func anonymous(_ payload: [UInt8], purpose: Purpose, to recipient: PublicKeys) -> [UInt8] {
        header(.anonymous) + keyID(recipient.boxKey) + Sodium.seal([purpose.rawValue] + payload, to: recipient.boxKey)
    }

    static func openAnonymous(_ sealed: [UInt8], own: AgentKeys) throws(SealError) -> (
        purpose: Purpose, content: ArraySlice<UInt8>
    ) {
        var reader = Reader(sealed, skipping: 4)
        guard Array(try reader.take(keyIDBytes)) == keyID(own.publicKeys.boxKey) else {
            throw SealError(.wrongKey, "sealed to other keys than this agent's")
        }
        guard let opened = Sodium.sealOpen(reader.rest, publicKey: own.publicKeys.boxKey, secret: own.boxSecret),
            let first = opened.first, let purpose = Purpose(rawValue: first)
        else { throw SealError(.tampered, "the sealed payload does not authenticate") }
        return (purpose, opened.dropFirst())
    }

    // MARK: signed and encrypted under a shared key (groups, contexts)

    /// `head`, a nonce, the AEAD of `content` (authenticating `data` and `head`), and the signer's
    /// signature over all of it.
    static func signedAEAD(head: [UInt8], data: [UInt8] = [], content: [UInt8], key: [UInt8], signer: AgentKeys)
        -> [UInt8]
    {
        let nonce = Sodium.nonce()
        let body = head + nonce + Sodium.aead(content, data: data + head, nonce: nonce, key: key)
        return body + Sodium.sign(body, secret: signer.signSecret)
    }

    /// Checks the signature by `signKey` (the caller checked the signer's key id) and opens what ``signedAEAD(head:data:content:key:signer:)``
    /// made, whose head ends at `reader`.
    static func openSignedAEAD(
        _ sealed: [UInt8], at reader: Reader, data: [UInt8] = [], key: [UInt8], signKey: [UInt8]
    ) throws(SealError) -> [UInt8] {
        guard sealed.count >= reader.offset + Sodium.nonceBytes + Sodium.aeadOverhead + Sodium.signatureBytes else {
            throw SealError(.malformed, "too short")
        }
        let signed = sealed.count - Sodium.signatureBytes
        guard Sodium.verify(sealed[signed...], of: sealed[..<signed], by: signKey) else {
            throw SealError(.tampered, "the signature does not verify")
        }
        let nonce = Array(sealed[reader.offset..<reader.offset + Sodium.nonceBytes])
        guard
            let opened = Sodium.aeadOpen(
                sealed[(reader.offset + Sodium.nonceBytes)..<signed], data: data + sealed[..<reader.offset],
                nonce: nonce, key: key)
        else { throw SealError(.tampered, "the sealed payload does not authenticate") }
        return opened
    }

    /// Reads the fields of a sealed payload, refusing a short one as `malformed`.
    struct Reader {
        let bytes: [UInt8]
        var offset: Int

        init(_ bytes: [UInt8], skipping offset: Int) {
            self.bytes = bytes
            self.offset = offset
        }

        mutating func take(_ count: Int) throws(SealError) -> ArraySlice<UInt8> {
            guard count <= bytes.count - offset else { throw SealError(.malformed, "too short") }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(SealError) -> T {
            try take(MemoryLayout<T>.size).reduce(0) { $0 << 8 | T($1) }
        }

        mutating func string() throws(SealError) -> String {
            let count = Int(try integer(UInt8.self))
            return String(decoding: try take(count), as: UTF8.self)
        }

        var rest: ArraySlice<UInt8> { bytes[offset...] }
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` big-endian.
    mutating func append<T: FixedWidthInteger>(integer value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }

    /// Appends a `u8` length and the UTF-8 of `string` (at most 255 bytes).
    mutating func append(shortString string: String) {
        let utf8 = Array(string.utf8.prefix(255))
        append(UInt8(utf8.count))
        append(contentsOf: utf8)
    }
}
