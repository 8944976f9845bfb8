import Bus
public import Logging
import NIOConcurrencyHelpers

/// A logger for a chatty source (librdkafka repeats its connection errors many times a second
/// while a broker is down): at most one line per ``intervalMs``; the lines held back are counted
/// and their number goes with the next line let through. Safe from any thread.
public final class RateLimitedLog: Sendable {
    public let logger: Logger
    public let intervalMs: UInt64
    private let state = NIOLockedValueBox((lastMs: UInt64(0), held: 0))

    public init(logger: Logger, intervalMs: UInt64 = 1_000) {
        self.logger = logger
        self.intervalMs = intervalMs
    }

    /// Logs `message` unless a line went out less than ``intervalMs`` ago.
    public func log(level: Logger.Level, _ message: String, metadata: Logger.Metadata = [:]) {
        let now = MonotonicClock.nowMs()
        let held: Int? = state.withLockedValue { state in
            guard state.lastMs == 0 || now >= state.lastMs + intervalMs else {
                state.held += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.held
        }
        guard let held else { return }
        var metadata = metadata
        if held > 0 { metadata["held_back"] = "\(held)" }
        logger.log(level: level, "\(message)", metadata: metadata)
    }
}
