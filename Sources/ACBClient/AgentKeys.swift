public import Bus
import Foundation

/// An agent's key pairs for end-to-end encryption: X25519 to open what is sealed to it, Ed25519
/// to sign. Made and kept by the agent; only ``publicKeys`` ever leave it (KEY_PUBLISH).
public struct AgentKeys: Sendable {
    public let publicKeys: PublicKeys
    let boxSecret: [UInt8]
    let signSecret: [UInt8]
    private let seeds: [UInt8]

    /// Keys from their 64 bytes of seed: the X25519 secret, then the Ed25519 seed.
    public init(seeds: [UInt8]) throws(SealError) {
        guard seeds.count == 2 * Sodium.keyBytes else {
            throw SealError(.invalidKeys, "keys are \(2 * Sodium.keyBytes) bytes of seed, not \(seeds.count)")
        }
        self.seeds = seeds
        boxSecret = Array(seeds.prefix(Sodium.keyBytes))
        let sign = Sodium.signKeys(seed: Array(seeds.suffix(Sodium.keyBytes)))
        signSecret = sign.secret
        publicKeys = PublicKeys(boxKey: Sodium.boxPublicKey(secret: boxSecret), signKey: sign.public)
    }

    /// Fresh random keys.
    public static func generate() -> AgentKeys {
        // 64 random bytes always make keys.
        try! AgentKeys(seeds: Sodium.random(2 * Sodium.keyBytes))
    }

    /// The keys in the file at `path`, made and written there (mode 0600) if it does not exist.
    /// - Throws: ``SealError`` `invalid_keys` when the file is not a key file or others may read it.
    public static func file(_ path: String) throws -> AgentKeys {
        if !FileManager.default.fileExists(atPath: path) {
            let keys = generate()
            try keys.write(to: path)
            return keys
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0
        guard mode & 0o077 == 0 else {
            throw SealError(
                .invalidKeys, "\(path) may be read by others (mode \(String(mode, radix: 8))); chmod 600 it")
        }
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        guard bytes.count == magic.count + 2 * Sodium.keyBytes, bytes.starts(with: magic) else {
            throw SealError(.invalidKeys, "\(path) is not an ACB key file")
        }
        return try AgentKeys(seeds: Array(bytes.dropFirst(magic.count)))
    }

    /// Writes the keys to a new file at `path`, readable by its owner only from its creation.
    /// - Throws: `invalid_keys` when the file exists already or cannot be written.
    public func write(to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else {
            throw SealError(.invalidKeys, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        let file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        try file.write(contentsOf: Data(Self.magic + seeds))
        try file.close()
    }

    /// The first bytes of a key file: `ACBK` and the format's version.
    private static let magic: [UInt8] = Array("ACBK".utf8) + [1]

    /// The rotation signature (KEY_PUBLISH) that lets `next` replace these keys.
    func rotationSignature(for next: PublicKeys) -> [UInt8] {
        Sodium.sign(next.rotationMessage, secret: signSecret)
    }
}
