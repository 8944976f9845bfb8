public import Bus
public import CoreMetrics

/// The bus's own metrics, made once through a swift-metrics factory (Prometheus in `acb serve`,
/// none by default) so the hot path only increments handlers it already holds.
///
/// What can be read at any time (sessions, queue depths, spools) is not counted here: the admin
/// API samples it when metrics are scraped.
public final class BusMetrics: Sendable {
    /// What became of a message the bus routed.
    public enum RouteOutcome: Int, Sendable, CaseIterable {
        /// Handed to the receivers' sessions.
        case delivered
        /// Stored for a receiver that is offline.
        case queued
        /// Refused with an error (the code is counted by ``rejected(_:)``).
        case failed
    }

    /// Every kind, in raw-value order (the counters' index).
    private static let kinds: [DeliveryKind] = [.direct, .broadcast, .topic, .request]
    private let routedCounters: [[Counter]]
    /// Indexed by code (raw value); nil where no code has that value.
    private let rejectedCounters: [Counter?]
    private let requestLatency: Timer

    /// Metrics made by `factory`; the default makes none (every call is a no-op).
    public init(factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        routedCounters = Self.kinds.map { kind in
            RouteOutcome.allCases.map { outcome in
                Counter(
                    label: "acb_messages_routed_total",
                    dimensions: [("kind", "\(kind)"), ("outcome", "\(outcome)")], factory: factory)
            }
        }
        var rejected = [Counter?](repeating: nil, count: Int(ErrorCode.allCases.map(\.rawValue).max() ?? 0) + 1)
        for code in ErrorCode.allCases {
            rejected[Int(code.rawValue)] = Counter(
                label: "acb_rejected_frames_total", dimensions: [("code", code.name)], factory: factory)
        }
        rejectedCounters = rejected
        requestLatency = Timer(label: "acb_request_duration_seconds", factory: factory)
    }

    /// One message of `kind` routed, with `outcome`.
    public func routed(_ kind: DeliveryKind, _ outcome: RouteOutcome) {
        routedCounters[Int(kind.rawValue)][outcome.rawValue].increment()
    }

    /// Messages one session routed with outcome `delivered`, by kind, since it last added them to
    /// the shared counters: a session adds them once per batch of frames, not once per message
    /// (the counters are atomics shared by every event loop).
    public struct DeliveredTally: Sendable {
        fileprivate var counts = SIMD4<UInt32>()

        public init() {}

        public mutating func add(_ kind: DeliveryKind) { counts[Int(kind.rawValue)] &+= 1 }

        public var isEmpty: Bool { counts == .zero }
    }

    /// Adds `tally` to the counters and empties it.
    public func record(_ tally: inout DeliveredTally) {
        for index in Self.kinds.indices where tally.counts[index] > 0 {
            routedCounters[index][RouteOutcome.delivered.rawValue].increment(by: Int64(tally.counts[index]))
        }
        tally = DeliveredTally()
    }

    /// One ERROR frame sent to an agent, with `code`.
    public func rejected(_ code: ErrorCode) {
        rejectedCounters[Int(code.rawValue)]?.increment()
    }

    /// A request answered `nanoseconds` after the bus took it.
    public func requestAnswered(afterNanoseconds nanoseconds: UInt64) {
        requestLatency.recordNanoseconds(Int64(clamping: nanoseconds))
    }
}
