import Foundation
import NIOCore

/// Unix time in milliseconds: the clock deadlines on the wire are expressed in.
public enum WallClock {
    public static func nowMs() -> UInt64 {
        UInt64(Date().timeIntervalSince1970 * 1000)
    }
}

/// Milliseconds on a clock that never jumps: for timeouts the bus measures itself (heartbeats,
/// acknowledgements, slow consumers, resume and idempotency windows), immune to wall-clock steps.
public enum MonotonicClock {
    public static func nowMs() -> UInt64 {
        NIODeadline.now().uptimeNanoseconds / 1_000_000
    }
}
