/// What one scenario measured on one server.
public struct ScenarioResult: Codable, Sendable {
    public var scenario: String
    public var title: String
    public var server: ServerUnderTest.Kind
    /// The headline figure, in `unit`.
    public var rate: Double
    public var unit: String
    public var seconds: Double
    /// Messages, requests or connections attempted.
    public var sent: UInt64 = 0
    /// What should have arrived: deliveries for every sent message the server did not refuse.
    public var expected: UInt64 = 0
    public var received: UInt64 = 0
    public var lost: UInt64 = 0
    public var duplicates: UInt64 = 0
    /// ACB answers every send: sends that got neither an OK nor a refusal.
    public var unanswered: UInt64 = 0
    public var refused: [String: UInt64] = [:]
    public var latency: LatencySummary?
    public var curve: [LatencyPoint] = []
    public var memory: MemoryUse?
    /// Anything else worth knowing (a target's own figure, a caveat).
    public var note: String?

    public init(scenario: Scenario, server: ServerUnderTest.Kind, rate: Double, unit: String, seconds: Double) {
        self.scenario = scenario.id
        self.title = scenario.title
        self.server = server
        self.rate = rate
        self.unit = unit
        self.seconds = seconds
    }

    /// Nothing lost, duplicated or left unanswered.
    public var isComplete: Bool { lost == 0 && duplicates == 0 && unanswered == 0 }

    mutating func record(_ latency: LatencyRecorder) {
        self.latency = latency.summary
        self.curve = latency.curve
    }
}

/// The server's resident memory over a scenario, in bytes.
public struct MemoryUse: Codable, Sendable {
    public var baseline: UInt64
    public var peak: UInt64
    public var end: UInt64

    public var growth: UInt64 { peak > baseline ? peak - baseline : 0 }
    /// What the server still holds at the end above its baseline.
    public var retained: UInt64 { end > baseline ? end - baseline : 0 }
}
