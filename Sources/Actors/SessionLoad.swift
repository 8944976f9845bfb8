import Bus
import Synchronization

/// The load figures of one session that other sessions read when routing by capability,
/// without a hop: readiness and deliveries in flight, as atomics.
final class SessionLoad: Sendable {
    private let readinessRaw = Atomic<UInt8>(Readiness.ready.rawValue)
    private let inFlightCount = Atomic<Int>(0)

    var readiness: Readiness {
        get { Readiness(rawValue: readinessRaw.load(ordering: .relaxed)) ?? .busy }
        set { readinessRaw.store(newValue.rawValue, ordering: .relaxed) }
    }

    var inFlight: Int {
        get { inFlightCount.load(ordering: .relaxed) }
        set { inFlightCount.store(newValue, ordering: .relaxed) }
    }
}
