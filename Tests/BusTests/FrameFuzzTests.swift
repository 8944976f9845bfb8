import Bus
import Foundation
import NIOCore
import TestSupport
import Testing

/// The frame decoder against mutated frames: every outcome is a frame, "need more bytes" or a
/// BusError; never a crash or a hang, and a length over the limit is refused before it is buffered.
@Suite struct FrameFuzzTests {
    /// Mutations per run: 100,000 in `make test`, more with ACB_FUZZ_ITERATIONS (`make fuzz`).
    static let iterations = ProcessInfo.processInfo.environment["ACB_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 100_000
    static let seed = ProcessInfo.processInfo.environment["ACB_FUZZ_SEED"].flatMap(UInt64.init) ?? 0xACB

    @Test func mutatedFramesDecodeOrAreRefused() {
        let corpus = SampleFrames.all.map { Array(SampleFrames.encode($0).readableBytesView) }
        var mutator = Mutator(seed: Self.seed)
        let maxFrame: UInt32 = 1 << 16
        var outcomes = (frames: 0, refused: 0, incomplete: 0)
        for _ in 0..<Self.iterations {
            // One to three frames back to back, one of them mutated: errors must not leak across frames.
            var input: [UInt8] = []
            for _ in 0...mutator.below(3) { input += corpus[mutator.below(corpus.count)] }
            var buffer = ByteBuffer(bytes: mutator.mutate(input))
            do {
                while let frame = try Frame.decode(from: &buffer, maxFrameBytes: maxFrame) {
                    outcomes.frames += 1
                    // A frame that decodes re-encodes to a frame that decodes to the same.
                    var again = SampleFrames.encode(frame)
                    #expect(try Frame.decode(from: &again, maxFrameBytes: UInt32.max) == frame)
                }
                outcomes.incomplete += 1
            } catch {
                outcomes.refused += 1
            }
        }
        // Every path was taken: the mutations are neither all harmless nor all fatal.
        #expect(outcomes.frames > 0 && outcomes.refused > 0 && outcomes.incomplete > 0, "\(outcomes)")
    }

    @Test func anOversizedLengthIsRefusedBeforeItsBytesArrive() {
        var buffer = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xF0, 0x01])
        #expect(throws: BusError.self) { try Frame.decode(from: &buffer, maxFrameBytes: 1 << 20) }
        #expect(buffer.readerIndex == 0, "nothing consumed or buffered beyond the header")
    }
}
