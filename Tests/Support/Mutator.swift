/// Seeded random mutations of valid inputs, for fuzzing: the same seed gives the same cases, so a
/// failure is reproduced by its seed and iteration.
public struct Mutator {
    /// SplitMix64: small, fast, and good enough to pick mutations.
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(max(bound, 1)))
    }

    /// `input` changed in one to four ways: bytes flipped, set to edge values, inserted, removed,
    /// duplicated, truncated, or a 32-bit field (such as a length prefix) overwritten.
    public mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0...below(4) {
            let at = below(bytes.count + 1)
            switch below(7) {
            case 0 where !bytes.isEmpty: bytes[min(at, bytes.count - 1)] ^= UInt8(truncatingIfNeeded: 1 << below(8))
            case 1 where !bytes.isEmpty: bytes[min(at, bytes.count - 1)] = [0, 0x7F, 0x80, 0xFF][below(4)]
            case 2: bytes.insert(contentsOf: (0..<below(16)).map { _ in UInt8(truncatingIfNeeded: next()) }, at: at)
            case 3: bytes.removeSubrange(at..<min(bytes.count, at + below(16)))
            case 4: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + below(64))], at: at)
            case 5: bytes.removeSubrange(at...)
            default:
                guard bytes.count >= 4 else { continue }
                let field = min(at, bytes.count - 4)
                let value = [UInt32.max, 0, 1, UInt32(truncatingIfNeeded: next())][below(4)]
                for index in 0..<4 { bytes[field + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * index)) }
            }
        }
        return bytes
    }
}
