import Bus
public import Logging
import NIOConcurrencyHelpers

/// A logger for a chatty source (librdkafka repeats its connection errors many times a second
/// while a broker is down): at most one line per level per ``intervalMs``; the lines held back are
/// counted and their number goes with the next line of that level let through. Lines below the
/// logger's level are dropped before they count. Safe from any thread.
public final class RateLimitedLog: Sendable {
    public let logger: Logger
    public let intervalMs: UInt64
    /// Per level: when its last line went out, and how many were held back since.
    private let state = NIOLockedValueBox([Logger.Level: (lastMs: UInt64, held: Int)]())

    public init(logger: Logger, intervalMs: UInt64 = 1_000) {
        self.logger = logger
        self.intervalMs = intervalMs
    }

    /// Logs `message` unless a line of its level went out less than ``intervalMs`` ago.
    public func log(level: Logger.Level, _ message: String, metadata: Logger.Metadata = [:]) {
        guard level >= logger.logLevel else { return }
        let now = MonotonicClock.nowMs()
        let held: Int? = state.withLockedValue { state in
            if let last = state[level], now < last.lastMs + intervalMs {
                state[level]?.held += 1
                return nil
            }
            defer { state[level] = (now, 0) }
            return state[level]?.held ?? 0
        }
        guard let held else { return }
        var metadata = metadata
        if held > 0 { metadata["held_back"] = "\(held)" }
        logger.log(level: level, "\(message)", metadata: metadata)
    }
}
