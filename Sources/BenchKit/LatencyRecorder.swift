import Histogram

/// Latencies in nanoseconds, in an HDR histogram (3 significant digits, 100 ns to 60 s).
public struct LatencyRecorder: Sendable {
    private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 100, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)

    public init() {}

    public mutating func record(nanoseconds: UInt64) {
        _ = histogram.record(min(max(nanoseconds, 100), histogram.highestTrackableValue))
    }

    public mutating func add(_ other: LatencyRecorder) {
        histogram.add(other.histogram)
    }

    public var count: UInt64 { histogram.totalCount }

    /// Percentiles in microseconds, or nil when nothing was recorded.
    public var summary: LatencySummary? {
        guard count > 0 else { return nil }
        func micros(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1_000 }
        return LatencySummary(
            p50: micros(50), p90: micros(90), p99: micros(99), p999: micros(99.9), max: Double(histogram.max) / 1_000)
    }

    /// The latency distribution as (percentile, microseconds) points, for charts.
    public var curve: [LatencyPoint] {
        guard count > 0 else { return [] }
        return histogram.percentiles(ticksPerHalfDistance: 5).map {
            LatencyPoint(percentile: $0.percentileLevelIteratedTo, micros: Double($0.value) / 1_000)
        }
    }
}

/// Latency percentiles, in microseconds.
public struct LatencySummary: Codable, Sendable, Equatable {
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double
}

/// One point of a latency distribution: this percentile of operations took at most `micros`.
public struct LatencyPoint: Codable, Sendable, Equatable {
    public var percentile: Double
    public var micros: Double
}
