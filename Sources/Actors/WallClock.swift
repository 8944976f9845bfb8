import Foundation

/// Unix time in milliseconds: the clock deadlines on the wire are expressed in.
public enum WallClock {
    public static func nowMs() -> UInt64 {
        UInt64(Date().timeIntervalSince1970 * 1000)
    }
}
