import Bus
import Foundation
import NIOConcurrencyHelpers
public import NIOCore

/// A stream source that is another one sealed for one agent (docs/protocol.md 5.16): a header
/// box carrying a fresh `crypto_secretstream` key, then the plaintext in messages of
/// ``messageBytes``, then an empty final message (tag FINAL). Each message's tag authenticates its
/// plaintext, in its place: the receiver needs no checksum of its own.
///
/// Messages are encrypted as the upload reads them, once each in order; the upload gives the
/// SHA-256 the bus checks in STREAM_END. The stream's state before each message is kept (52 bytes
/// each), so a message read again after a resume encrypts to the same bytes.
public struct SealedSource: StreamSource {
    public let size: UInt64
    private let plain: any StreamSource
    private let header: [UInt8]
    private let count: Int
    private let progress: NIOLockedValueBox<Progress>

    /// How far encryption got: the state before each message encrypted so far and the next, and
    /// the last message encrypted (a chunk spans two, read one after the other).
    private struct Progress {
        var states: [SecretStream]
        var last: (index: Int, bytes: [UInt8])?
    }

    /// Plaintext bytes per message.
    static let messageBytes = 1 << 20

    init(_ plain: some StreamSource, to recipient: PublicKeys, from sender: AgentKeys) throws {
        let key = Sodium.random(Sodium.keyBytes)
        let (stream, streamHeader) = SecretStream.push(key: key)
        var content = key + streamHeader
        content.append(integer: UInt32(Self.messageBytes))
        content.append(integer: plain.size)
        var header = SealedFormat.box(content, purpose: .streamKey, to: recipient, from: sender).sealed
        header[SealedFormat.magic.count] = SealedFormat.Kind.stream.rawValue
        let (count, sealedSize) = Self.layout(plain.size)
        var states: [SecretStream] = []
        states.reserveCapacity(count + 1)
        states.append(stream)
        self.plain = plain
        self.header = header
        self.count = count
        self.progress = NIOLockedValueBox(Progress(states: states))
        self.size = sealedSize
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
        let finalStart = UInt64(header.count) + plain.size + UInt64(count * Sodium.streamOverhead)
        guard position < finalStart else { return (count, finalStart) }
        let full = UInt64(Self.messageBytes + Sodium.streamOverhead)
        let index = Int((position - UInt64(header.count)) / full)
        return (index, UInt64(header.count) + UInt64(index) * full)
    }

    /// Message `index` encrypted, after those before it if they were not yet (each needs the
    /// state the one before it left).
    private func encrypted(_ index: Int) throws -> [UInt8] {
        try progress.withLockedValue { progress in
            if let last = progress.last, last.index == index { return last.bytes }
            while progress.states.count <= index { _ = try encrypt(progress.states.count - 1, &progress) }
            return try encrypt(index, &progress)
        }
    }

    private func encrypt(_ index: Int, _ progress: inout Progress) throws -> [UInt8] {
        let offset = UInt64(index) * UInt64(Self.messageBytes)
        let input =
            index < count
            ? try plain.read(offset: offset, count: Int(min(UInt64(Self.messageBytes), plain.size - offset)))
            : ByteBuffer()
        var stream = progress.states[index]
        let sealed = [UInt8](unsafeUninitializedCapacity: input.readableBytes + Sodium.streamOverhead) { out, written in
            input.withUnsafeReadableBytes {
                stream.push($0, final: index == count, into: UnsafeMutableRawBufferPointer(out))
            }
            written = input.readableBytes + Sodium.streamOverhead
        }
        if index == progress.states.count - 1, index < count { progress.states.append(stream) }
        progress.last = (index, sealed)
        return sealed
    }

    /// A sealed stream of `size` plaintext bytes in messages of `messageBytes`: its data messages
    /// (the empty final one not counted) and its size (header, plaintext, each message's overhead).
    static func layout(_ size: UInt64, messageBytes: Int = messageBytes) -> (count: Int, sealedSize: UInt64) {
        let count = Int((size + UInt64(messageBytes) - 1) / UInt64(messageBytes))
        return (count, UInt64(SealedFormat.streamHeaderBytes) + size + UInt64((count + 1) * Sodium.streamOverhead))
    }
}

extension ACBClient {
    /// Opens a sealed stream the bus delivered, in place: each message's plaintext is written over
    /// the file ahead of the ciphertext still to be read (downloads are made readable by their owner
    /// only, 0600), then the file is cut to the plaintext's size. The caller deletes the file when
    /// this throws.
    /// - Returns: the stream, its size now the plaintext's.
    /// - Throws: ``SealError``: `tampered` (a chunk changed, replayed or reordered), `truncated`,
    ///   and the codes of a box for the header.
    func openStream(_ stream: IncomingStream) async throws -> IncomingStream {
        guard let file = FileHandle(forUpdatingAtPath: stream.path) else {
            throw SealError(.malformed, "cannot open \(stream.path)")
        }
        defer { try? file.close() }
        let header = Array(try file.read(upToCount: SealedFormat.streamHeaderBytes) ?? Data())
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
        // The sender wrote `size`: bounded by what arrived before any arithmetic on it.
        guard size <= stream.size else {
            throw SealError(.truncated, "the stream's length is not the one its header announces")
        }
        let (count, expected) = SealedSource.layout(size, messageBytes: messageBytes)
        guard stream.size == expected else {
            throw SealError(.truncated, "the stream's length is not the one its header announces")
        }
        var plaintext = [UInt8](repeating: 0, count: messageBytes)
        for index in 0...count {
            let length = index < count ? Int(min(UInt64(messageBytes), size - UInt64(index) * UInt64(messageBytes))) : 0
            // Every message before this one is full, but the final one follows a short last.
            let before = min(UInt64(index) * UInt64(messageBytes), size)
            try file.seek(
                toOffset: UInt64(SealedFormat.streamHeaderBytes) + before + UInt64(index * Sodium.streamOverhead))
            let sealed = try file.read(upToCount: length + Sodium.streamOverhead) ?? Data()
            guard sealed.count == length + Sodium.streamOverhead else {
                throw SealError(.truncated, "the stream ends in message \(index) of \(count + 1)")
            }
            let final = sealed.withUnsafeBytes { bytes in
                plaintext.withUnsafeMutableBytes { pull.pull(bytes, into: $0) }
            }
            guard let final, final == (index == count) else {
                throw SealError(
                    .tampered, "message \(index) of the stream does not authenticate (changed, replayed or reordered)")
            }
            try file.seek(toOffset: before)
            try file.write(contentsOf: plaintext[..<length])
        }
        try file.truncate(atOffset: size)
        var opened = stream
        opened.size = size
        opened.sealedBy = .agent
        return opened
    }
}
