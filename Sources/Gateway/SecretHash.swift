public import Bus
import CSodium

/// Agent secrets as Argon2id hashes (libsodium's `crypto_pwhash_str`, with its interactive costs:
/// 64 MiB and 2 passes). The stored string carries the salt and the costs; verification compares
/// in constant time. Both calls take tens of milliseconds on purpose: keep them off event loops.
public enum SecretHash {
    /// Shortest secret accepted.
    public static let minimumSecretBytes = 16

    /// The hash to store for `secret`.
    /// - Throws: ``ErrorCode/invalidArgument`` for a short secret, ``ErrorCode/internal`` when
    ///   libsodium cannot get the memory.
    public static func hash(_ secret: String) throws(BusError) -> String {
        guard secret.utf8.count >= minimumSecretBytes else {
            throw BusError(.invalidArgument, "a secret must be at least \(minimumSecretBytes) bytes")
        }
        guard isReady else { throw BusError(.internal, "libsodium could not be initialised") }
        var output = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
        let status = crypto_pwhash_str_alg(
            &output, secret, UInt64(secret.utf8.count), UInt64(crypto_pwhash_OPSLIMIT_INTERACTIVE),
            Int(crypto_pwhash_MEMLIMIT_INTERACTIVE), crypto_pwhash_ALG_ARGON2ID13)
        guard status == 0 else { throw BusError(.internal, "Argon2id hashing failed (out of memory?)") }
        return String(nulTerminated: output)
    }

    /// Whether `secret` is the one `hash` was made from.
    /// False, too, when libsodium could not be initialised.
    public static func verify(_ secret: String, against hash: String) -> Bool {
        isReady && crypto_pwhash_str_verify(hash, secret, UInt64(secret.utf8.count)) == 0
    }

    /// A new random secret: 32 bytes from libsodium's CSPRNG, base64url without padding.
    /// - Throws: ``ErrorCode/internal`` when libsodium could not be initialised.
    public static func generate() throws(BusError) -> String {
        guard isReady else { throw BusError(.internal, "libsodium could not be initialised") }
        var bytes = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&bytes, bytes.count)
        var text = [CChar](repeating: 0, count: 64)
        sodium_bin2base64(&text, text.count, bytes, bytes.count, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
        return String(nulTerminated: text)
    }

    /// A hash no secret is known to match (of 24 random bytes, thrown away), checked when LOGIN
    /// names an agent without a credential, so that it costs the same as a wrong secret.
    static let decoy =
        "$argon2id$v=19$m=65536,t=2,p=1$82onB25rfTHqQezkL9AVyg$s35SyWcjfCGJQJjsFz5qdnFpgk1g+Wp/1CwEvXO7xps"

    /// Whether `sodium_init` succeeded (0, or 1 when already done; -1 is a failure, and then
    /// nothing here may use libsodium). Swift runs a static's initialiser once, thread-safely.
    private static let isReady = sodium_init() >= 0
}
