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
    /// Refusals by the server's code: answered, so not lost. ACB's fan-out reports receivers it
    /// skipped (mailbox full) as `skipped_receiver`.
    public var refused: [String: UInt64] = [:]
    /// Agents the server disconnected or told off during the run, by reason.
    public var disconnects: [String: UInt64] = [:]
    /// Open loop: requests that were due but not sent, because too many were in flight.
    public var skipped: UInt64 = 0
    public var latency: LatencySummary?
    public var curve: [LatencyPoint] = []
    public var usage: ResourceUse?
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

    /// Microseconds of server CPU per message delivered: the server's CPU time over `received`, so
    /// per reply in request/reply, per connection in a connect storm (per agent idle, per stream);
    /// nil without a sample of the server or with nothing received.
    public var serverCPUMicrosPerMessage: Double? {
        guard let usage, received > 0 else { return nil }
        return usage.serverCPUSeconds / Double(received) * 1e6
    }

    /// Nothing lost, duplicated, left unanswered or skipped, and no agent disconnected.
    public var isComplete: Bool {
        lost == 0 && duplicates == 0 && unanswered == 0 && skipped == 0 && disconnects.isEmpty
    }

    /// What went wrong, for the report; empty when complete.
    public var problems: String {
        var parts: [String] = []
        if lost > 0 { parts.append("\(lost) lost") }
        if duplicates > 0 { parts.append("\(duplicates) duplicated") }
        if unanswered > 0 { parts.append("\(unanswered) unanswered") }
        if skipped > 0 { parts.append("\(skipped) skipped") }
        for (reason, count) in disconnects.sorted(by: { $0.key < $1.key }) {
            parts.append("\(count) disconnected (\(reason))")
        }
        return parts.joined(separator: ", ")
    }

    mutating func record(_ latency: LatencyRecorder) {
        self.latency = latency.summary
        self.curve = latency.curve
    }
}
