import CSodium
import Synchronization

/// The libsodium calls end-to-end encryption makes, over byte arrays. Every `open` returns nil when
/// authentication fails: a wrong key, another sender, or a changed byte look the same to it.
enum Sodium {
    static let keyBytes = 32
    static let nonceBytes = Int(crypto_box_NONCEBYTES)  // 24, as XChaCha20's
    static let boxOverhead = Int(crypto_box_MACBYTES)
    static let sealOverhead = crypto_box_sealbytes()
    static let aeadOverhead = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
    static let streamHeaderBytes = Int(crypto_secretstream_xchacha20poly1305_HEADERBYTES)
    static let streamOverhead = Int(crypto_secretstream_xchacha20poly1305_ABYTES)
    static let signatureBytes = Int(crypto_sign_BYTES)

    /// libsodium is initialised before the first call (`sodium_init` is idempotent and thread-safe).
    private static let ready: Bool = sodium_init() >= 0

    /// Random bytes for nonces, drawn from libsodium 4 KiB at a time: one call for 170 nonces
    /// instead of a `getrandom` system call each (a nonce must be unique, not secret). A forked
    /// child would share the pool's rest with its parent; Swift processes start others with
    /// `posix_spawn`, never a bare `fork`.
    private static let nonces = Mutex<(bytes: [UInt8], used: Int)>(([], 0))

    /// A fresh random nonce of ``nonceBytes``.
    static func nonce() -> [UInt8] {
        nonces.withLock { pool in
            if pool.used + nonceBytes > pool.bytes.count { (pool.bytes, pool.used) = (random(4_096), 0) }
            defer { pool.used += nonceBytes }
            return Array(pool.bytes[pool.used..<pool.used + nonceBytes])
        }
    }

    static func random(_ count: Int) -> [UInt8] {
        precondition(ready, "libsodium failed to initialise")
        var bytes = [UInt8](repeating: 0, count: count)
        randombytes_buf(&bytes, count)
        return bytes
    }

    /// A new X25519 key pair from a 32-byte secret.
    static func boxPublicKey(secret: [UInt8]) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: keyBytes)
        _ = crypto_scalarmult_base(&key, secret)
        return key
    }

    /// The Ed25519 public key and 64-byte secret key of a 32-byte seed.
    static func signKeys(seed: [UInt8]) -> (public: [UInt8], secret: [UInt8]) {
        precondition(ready, "libsodium failed to initialise")
        var publicKey = [UInt8](repeating: 0, count: keyBytes)
        var secretKey = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        _ = crypto_sign_seed_keypair(&publicKey, &secretKey, seed)
        return (publicKey, secretKey)
    }

    /// Whether an X25519 public key is of low order: whatever secret meets it, the shared key is all
    /// zero, which anyone can compute (`crypto_scalarmult` refuses it).
    static func isWeak(_ boxKey: [UInt8]) -> Bool {
        guard boxKey.count == keyBytes else { return true }
        var out = [UInt8](repeating: 0, count: keyBytes)
        return crypto_scalarmult(&out, probeScalar, boxKey) != 0
    }

    private static let probeScalar = [UInt8](repeating: 0x42, count: keyBytes)

    /// `crypto_box_beforenm`: the key two X25519 key pairs share (one side's public key, the
    /// other's secret), which `crypto_box_easy` would compute on every call.
    static func sharedKey(_ peer: [UInt8], secret: [UInt8]) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: Int(crypto_box_BEFORENMBYTES))
        _ = crypto_box_beforenm(&key, peer, secret)
        return key
    }

    /// `crypto_box_easy_afternm`: what `crypto_box_easy` writes, under a ``sharedKey(_:secret:)``,
    /// appended to `out`.
    static func box(_ message: [UInt8], nonce: [UInt8], shared key: [UInt8], appendingTo out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: message.count + boxOverhead))
        out.withUnsafeMutableBufferPointer {
            _ = crypto_box_easy_afternm($0.baseAddress! + start, message, UInt64(message.count), nonce, key)
        }
    }

    static func boxOpen(_ box: ArraySlice<UInt8>, nonce: [UInt8], shared key: [UInt8]) -> [UInt8]? {
        guard box.count >= boxOverhead else { return nil }
        var out = [UInt8](repeating: 0, count: box.count - boxOverhead)
        let status = box.withUnsafeBufferPointer {
            // Not empty: at least boxOverhead bytes.
            crypto_box_open_easy_afternm(&out, $0.baseAddress!, UInt64(box.count), nonce, key)
        }
        return status == 0 ? out : nil
    }

    /// `crypto_box_seal`: to `recipient`, from no one it can name.
    static func seal(_ message: [UInt8], to recipient: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: message.count + sealOverhead)
        _ = crypto_box_seal(&out, message, UInt64(message.count), recipient)
        return out
    }

    static func sealOpen(_ sealed: ArraySlice<UInt8>, publicKey: [UInt8], secret: [UInt8]) -> [UInt8]? {
        guard sealed.count >= sealOverhead else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.count - sealOverhead)
        let status = crypto_box_seal_open(&out, Array(sealed), UInt64(sealed.count), publicKey, secret)
        return status == 0 ? out : nil
    }

    /// XChaCha20-Poly1305 (IETF) with `data` authenticated too.
    static func aead(_ message: [UInt8], data: [UInt8], nonce: [UInt8], key: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: message.count + aeadOverhead)
        var written: UInt64 = 0
        _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
            &out, &written, message, UInt64(message.count), data, UInt64(data.count), nil, nonce, key)
        return out
    }

    static func aeadOpen(_ sealed: ArraySlice<UInt8>, data: [UInt8], nonce: [UInt8], key: [UInt8]) -> [UInt8]? {
        guard sealed.count >= aeadOverhead else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.count - aeadOverhead)
        var written: UInt64 = 0
        let status = crypto_aead_xchacha20poly1305_ietf_decrypt(
            &out, &written, nil, Array(sealed), UInt64(sealed.count), data, UInt64(data.count), nonce, key)
        return status == 0 ? out : nil
    }

    /// An Ed25519 signature of `message` by the 64-byte `secret`.
    static func sign(_ message: [UInt8], secret: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: signatureBytes)
        _ = crypto_sign_detached(&signature, nil, message, UInt64(message.count), secret)
        return signature
    }

    static func verify(_ signature: ArraySlice<UInt8>, of message: ArraySlice<UInt8>, by publicKey: [UInt8]) -> Bool {
        guard signature.count == signatureBytes, publicKey.count == keyBytes else { return false }
        return crypto_sign_verify_detached(Array(signature), Array(message), UInt64(message.count), publicKey) == 0
    }
}

/// One direction of a `crypto_secretstream_xchacha20poly1305` stream: messages encrypted in order,
/// each authenticated together with every one before it, so a reordered, replayed or dropped
/// message fails. Its state is a value: a copy resumes from where it was taken.
struct SecretStream {
    private var state = crypto_secretstream_xchacha20poly1305_state()

    /// A pushing stream under `key`, and the header the pulling side needs.
    static func push(key: [UInt8]) -> (SecretStream, header: [UInt8]) {
        var stream = SecretStream()
        var header = [UInt8](repeating: 0, count: Sodium.streamHeaderBytes)
        _ = crypto_secretstream_xchacha20poly1305_init_push(&stream.state, &header, key)
        return (stream, header)
    }

    /// A pulling stream; nil for a header that does not fit.
    static func pull(key: [UInt8], header: [UInt8]) -> SecretStream? {
        var stream = SecretStream()
        guard crypto_secretstream_xchacha20poly1305_init_pull(&stream.state, header, key) == 0 else { return nil }
        return stream
    }

    /// Encrypts the next message; `final` ends the stream.
    mutating func push(_ message: UnsafeRawBufferPointer, final: Bool, into out: UnsafeMutableRawBufferPointer) {
        let tag = UInt8(
            final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        _ = crypto_secretstream_xchacha20poly1305_push(
            &state, out.baseAddress?.assumingMemoryBound(to: UInt8.self), nil,
            message.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(message.count), nil, 0, tag)
    }

    /// Decrypts the next message into `out` (its length less the overhead).
    /// - Returns: whether it was the final one; nil when it does not authenticate.
    mutating func pull(_ message: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool? {
        var tag: UInt8 = 0
        let status = crypto_secretstream_xchacha20poly1305_pull(
            &state, out.baseAddress?.assumingMemoryBound(to: UInt8.self), nil, &tag,
            message.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(message.count), nil, 0)
        guard status == 0 else { return nil }
        return tag == UInt8(crypto_secretstream_xchacha20poly1305_TAG_FINAL)
    }
}
