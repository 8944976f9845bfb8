import Synchronization

/// The state of one supervised part of the bus (a writer's thread, the registry restorer), as
/// /readyz, /metrics and the admin API show it; its supervisor updates it.
public final class ChildStatus: Sendable {
    public enum State: String, Sendable, Codable {
        /// Running as it should.
        case running
        /// It failed, and is started again after a backoff.
        case restarting
        /// It failed too often in a row: still restarted, at the longest backoff, and the bus reports
        /// not ready until it runs again.
        case failed
        /// Its work is done (shutdown, or a one-off task that finished).
        case stopped
    }

    /// What the status says at one moment.
    public struct Snapshot: Sendable, Equatable {
        public var name: String
        public var state: State
        /// Restarts since the bus started.
        public var restarts: Int
        /// The last failure, and when it happened (Unix ms).
        public var lastFailure: String?
        public var lastFailureAt: UInt64?

        /// Whether the child does its work (running, or finished).
        public var isUp: Bool { state == .running || state == .stopped }
    }

    /// A failure made on purpose (``injectFaults(_:)``): how tests take a child down.
    public struct InjectedFault: Error, CustomStringConvertible {
        public var description: String { "injected fault" }
    }

    /// The child's name in /readyz and /metrics.
    public let name: String
    /// The snapshot, and whether the current run of failures was reported as escalated.
    private let snapshot: Mutex<(Snapshot, escalated: Bool)>
    private let pendingFaults = Atomic<Int>(0)
    private let escalation: Mutex<(@Sendable (Snapshot) -> Void)?> = Mutex(nil)

    /// A child that starts running now.
    public init(name: String) {
        self.name = name
        snapshot = Mutex((Snapshot(name: name, state: .running, restarts: 0), false))
    }

    /// Where the child stands now.
    public var current: Snapshot { snapshot.withLock { $0.0 } }

    /// Called with the snapshot each time the child escalates to ``State/failed`` (the bus audits it).
    public func onEscalation(_ report: @escaping @Sendable (Snapshot) -> Void) {
        escalation.withLock { $0 = report }
    }

    /// The child runs (again).
    public func running() {
        snapshot.withLock { $0.0.state = .running }
    }

    /// The child's work is done.
    public func stopped() {
        snapshot.withLock { $0.0.state = .stopped }
    }

    /// The child failed with `error` at `now` (Unix ms); it restarts, as ``State/failed`` while
    /// `escalated`. The first escalated failure of a run is reported (``onEscalation(_:)``).
    public func failed(_ error: any Error, escalated: Bool, now: UInt64) {
        let report = snapshot.withLock { status -> Snapshot? in
            status.0.state = escalated ? .failed : .restarting
            status.0.restarts += 1
            status.0.lastFailure = "\(error)"
            status.0.lastFailureAt = now
            defer { status.escalated = escalated }
            return escalated && !status.escalated ? status.0 : nil
        }
        if let report { escalation.withLock { $0 }?(report) }
    }

    /// Makes the child fail at its next `count` checkpoints (tests).
    public func injectFaults(_ count: Int) {
        pendingFaults.add(count, ordering: .relaxed)
    }

    /// Where the child may fail on purpose: throws while injected faults are pending. Call it where
    /// a failure loses nothing (before the child takes work from its queue).
    public func checkpoint() throws(InjectedFault) {
        guard pendingFaults.load(ordering: .relaxed) > 0 else { return }
        pendingFaults.subtract(1, ordering: .relaxed)
        throw InjectedFault()
    }
}
