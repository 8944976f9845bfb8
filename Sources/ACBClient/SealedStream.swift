import Bus
import Crypto
import Foundation
import NIOConcurrencyHelpers
public import NIOCore

/// A stream source that is another one sealed for one agent (docs/protocol.md 5.16): a header
/// box carrying a fresh `crypto_secretstream` key, then the plaintext in messages of
/// ``messageBytes``, then a final message holding the plaintext's SHA-256.
///
/// The bus checks its SHA-256 over these bytes, as over any stream's, so resuming works as for a
/// plain upload: the stream's state before each message is kept (52 bytes each), and a message
/// encrypts to the same bytes however often it is read.
public struct SealedSource: StreamSource {
    public let size: UInt64
    public let knownSHA256: [UInt8]?
    private let plain: any StreamSource
    private let header: [UInt8]
    private let states: [SecretStream]
    private let plainDigest: [UInt8]
    /// The last message encrypted (index, bytes): a chunk spans two messages, read one after the other.
    private let last = NIOLockedValueBox<(Int, [UInt8])?>(nil)

    /// Plaintext bytes per message.
    static let messageBytes = 1 << 20

    init(_ plain: some StreamSource, to recipient: PublicKeys, from sender: AgentKeys) throws {
        let key = Sodium.random(Sodium.keyBytes)
        var (stream, streamHeader) = SecretStream.push(key: key)
        var content = key + streamHeader
        content.append(integer: UInt32(Self.messageBytes))
        content.append(integer: plain.size)
        var header = SealedFormat.box(content, purpose: .streamKey, to: recipient, from: sender).sealed
        header[SealedFormat.magic.count] = SealedFormat.Kind.stream.rawValue
        var plainHasher = SHA256()
        var hasher = SHA256()
        hasher.update(data: header)
        var states: [SecretStream] = []
        let count = Self.messageCount(plain.size)
        states.reserveCapacity(count + 1)
        for index in 0..<count {
            states.append(stream)
            let message = try Self.message(index, of: plain, count: count, digest: [])
            message.withUnsafeReadableBytes { plainHasher.update(bufferPointer: $0) }
            hasher.update(data: Self.encrypt(message, final: false, with: &stream))
        }
        states.append(stream)
        let digest = Array(plainHasher.finalize())
        hasher.update(data: Self.encrypt(ByteBuffer(bytes: digest), final: true, with: &stream))
        self.plain = plain
        self.header = header
        self.states = states
        self.plainDigest = digest
        self.size = UInt64(header.count) + plain.size + UInt64((count + 1) * Sodium.streamOverhead) + 32
        self.knownSHA256 = Array(hasher.finalize())
    }

    public func read(offset: UInt64, count: Int) throws -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(count)
        var position = offset
        let end = min(offset + UInt64(count), size)
        while position < end {
            if position < UInt64(header.count) {
                out.writeBytes(header[Int(position)..<min(header.count, Int(end))])
                position = UInt64(out.readableBytes) + offset
                continue
            }
            let (index, start) = locate(position)
            let message = try encrypted(index)
            let from = Int(position - start)
            let upTo = min(message.count, from + Int(end - position))
            out.writeBytes(message[from..<upTo])
            position += UInt64(upTo - from)
        }
        return out
    }

    /// The message holding byte `position` of the sealed stream, and where it starts: every data
    /// message but the last is full, and the final one follows the last.
    private func locate(_ position: UInt64) -> (Int, UInt64) {
        let count = states.count - 1
        let finalStart = UInt64(header.count) + plain.size + UInt64(count * Sodium.streamOverhead)
        guard position < finalStart else { return (count, finalStart) }
        let full = UInt64(Self.messageBytes + Sodium.streamOverhead)
        let index = Int((position - UInt64(header.count)) / full)
        return (index, UInt64(header.count) + UInt64(index) * full)
    }

    private func encrypted(_ index: Int) throws -> [UInt8] {
        if let (cached, bytes) = last.withLockedValue({ $0 }), cached == index { return bytes }
        var stream = states[index]
        let count = states.count - 1
        let input = try Self.message(index, of: plain, count: count, digest: plainDigest)
        let sealed = Self.encrypt(input, final: index == count, with: &stream)
        last.withLockedValue { $0 = (index, sealed) }
        return sealed
    }

    /// The messages of plaintext of `size` bytes (the final one, with the digest, not counted).
    static func messageCount(_ size: UInt64) -> Int {
        Int((size + UInt64(messageBytes) - 1) / UInt64(messageBytes))
    }

    /// Plaintext message `index`, or the final one (`digest`) when `index == count`.
    private static func message(_ index: Int, of plain: some StreamSource, count: Int, digest: [UInt8]) throws
        -> ByteBuffer
    {
        guard index < count else { return ByteBuffer(bytes: digest) }
        let offset = UInt64(index) * UInt64(messageBytes)
        return try plain.read(offset: offset, count: Int(min(UInt64(messageBytes), plain.size - offset)))
    }

    private static func encrypt(_ message: ByteBuffer, final: Bool, with stream: inout SecretStream) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: message.readableBytes + Sodium.streamOverhead) { out, written in
            message.withUnsafeReadableBytes { stream.push($0, final: final, into: UnsafeMutableRawBufferPointer(out)) }
            written = message.readableBytes + Sodium.streamOverhead
        }
    }
}

extension ACBClient {
    /// Opens a sealed stream the bus delivered into a plaintext file at the same path.
    /// - Returns: the stream, its size now the plaintext's.
    /// - Throws: ``SealError``: `tampered` (a chunk changed, replayed or reordered), `truncated`,
    ///   and the codes of a box for the header.
    func openStream(_ stream: IncomingStream) async throws -> IncomingStream {
        guard let input = FileHandle(forReadingAtPath: stream.path) else {
            throw SealError(.malformed, "cannot read \(stream.path)")
        }
        defer { try? input.close() }
        let header = Array(try input.read(upToCount: SealedFormat.streamHeaderBytes) ?? Data())
        guard header.count == SealedFormat.streamHeaderBytes else { throw SealError(.truncated, "no header") }
        let (purpose, _, content) = try await openBox(header, from: stream.from)
        var reader = SealedFormat.Reader(Array(content), skipping: 0)
        let key = Array(try reader.take(Sodium.keyBytes))
        let streamHeader = Array(try reader.take(Sodium.streamHeaderBytes))
        let messageBytes = Int(try reader.integer(UInt32.self))
        let size = try reader.integer(UInt64.self)
        guard purpose == .streamKey, messageBytes > 0, messageBytes <= SealedSource.messageBytes,
            var pull = SecretStream.pull(key: key, header: streamHeader)
        else { throw SealError(.malformed, "not a sealed stream's header") }
        let count = Int((size + UInt64(messageBytes) - 1) / UInt64(messageBytes))
        let expected =
            UInt64(SealedFormat.streamHeaderBytes) + size + UInt64((count + 1) * Sodium.streamOverhead) + 32
        guard stream.size == expected else {
            throw SealError(.truncated, "the stream's length is not the one its header announces")
        }
        // Readable by its owner only, made anew (never an existing file or link).
        let plainPath = stream.path + ".open-\(UUID().uuidString)"
        let descriptor = open(plainPath, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw SealError(.malformed, "cannot write \(plainPath)") }
        let output = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        defer { try? output.close() }
        var hasher = SHA256()
        for index in 0...count {
            let length =
                index < count ? Int(min(UInt64(messageBytes), size - UInt64(index) * UInt64(messageBytes))) : 32
            let sealed = try input.read(upToCount: length + Sodium.streamOverhead) ?? Data()
            guard sealed.count == length + Sodium.streamOverhead else {
                try? FileManager.default.removeItem(atPath: plainPath)
                throw SealError(.truncated, "the stream ends in message \(index) of \(count + 1)")
            }
            var opened = [UInt8](repeating: 0, count: length)
            let final = sealed.withUnsafeBytes { bytes in
                opened.withUnsafeMutableBytes { pull.pull(bytes, into: $0) }
            }
            guard let final, final == (index == count) else {
                try? FileManager.default.removeItem(atPath: plainPath)
                throw SealError(
                    .tampered, "message \(index) of the stream does not authenticate (changed, replayed or reordered)")
            }
            if index < count {
                hasher.update(data: opened)
                try output.write(contentsOf: opened)
            } else if opened != Array(hasher.finalize()) {
                try? FileManager.default.removeItem(atPath: plainPath)
                throw SealError(.tampered, "the plaintext does not match its SHA-256")
            }
        }
        try FileManager.default.removeItem(atPath: stream.path)
        try FileManager.default.moveItem(atPath: plainPath, toPath: stream.path)
        var opened = stream
        opened.size = size
        opened.sealedBy = .agent
        return opened
    }
}
