import Bus
import Foundation
import NIOCore
import TestSupport
import Testing

/// The hex examples in docs/protocol.md are real frames: each decodes and re-encodes to the same bytes.
@Suite struct ProtocolDocumentTests {
    static let document: String = {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/protocol.md")
        return (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }()

    /// The bytes of every ```hex block, comments after `#` removed.
    static let examples: [[UInt8]] = {
        var blocks: [[UInt8]] = []
        var current: [UInt8]?
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if current == nil, trimmed == "```hex" {
                current = []
            } else if current != nil, trimmed.hasPrefix("```") {
                blocks.append(current!)
                current = nil
            } else if current != nil {
                let code = trimmed.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                current! += code.split(separator: " ").compactMap { UInt8($0, radix: 16) }
            }
        }
        return blocks
    }()

    @Test func theDocumentHasWorkedExamples() {
        #expect(Self.examples.count >= 3)
    }

    @Test func everyExampleRoundTrips() throws {
        let covered = try Self.examples.map { bytes in
            var buffer = ByteBuffer(bytes: bytes)
            let frame = try #require(try Frame.decode(from: &buffer, maxFrameBytes: UInt32.max))
            #expect(buffer.readableBytes == 0, "one whole frame per example")
            #expect(Array(SampleFrames.encode(frame).readableBytesView) == bytes)
            return frame.type
        }
        #expect(
            Set(covered).isSuperset(of: [
                .hello, .send, .deliver, .contextWrite, .context, .contextWatch, .contextEvent,
                .credit, .confirm, .ping, .pong,
            ]))
    }

    /// The optional last fields have an example each: a durable SEND, a DELIVER with its id, a
    /// STREAM_END with the SHA-256.
    @Test func theOptionalLastFieldsHaveExamples() throws {
        let frames = try Self.examples.compactMap { bytes in
            var buffer = ByteBuffer(bytes: bytes)
            return try Frame.decode(from: &buffer, maxFrameBytes: UInt32.max)
        }
        #expect(frames.contains { if case .send(let send) = $0 { send.flags == .durable } else { false } })
        #expect(frames.contains { if case .deliver(let deliver) = $0 { (deliver.messageID ?? 0) != 0 } else { false } })
        #expect(frames.contains { if case .streamEnd(let end) = $0 { end.sha256 != nil } else { false } })
    }

    @Test func everyErrorCodeHasARowInTheTable() {
        for code in ErrorCode.allCases {
            #expect(
                Self.document.contains("| \(code.rawValue) | `\(code.name)` |"),
                "docs/protocol.md has no table row for \(code.rawValue) \(code.name)")
        }
    }
}
