import Bus
import Foundation
import Logging
import Persistence

/// The audit pipeline alone, in this process: events recorded as the bus records them (one
/// journal write each), produced to the real broker, counted once the broker confirmed them all.
public enum AuditPipelineBench {
    /// What one run measured.
    public struct Result: Sendable, CustomStringConvertible {
        public var events: Int
        /// Events per second, from the first record to the broker's last confirmation.
        public var rate: Double
        /// This process's resident memory at the start, at its peak and at the end, in bytes.
        public var rssStart: UInt64
        public var rssPeak: UInt64
        public var rssEnd: UInt64
        public var dropped: Int

        public var description: String {
            let mib = { (bytes: UInt64) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
            return "audit: \(Int(rate)) events/s confirmed by the broker (\(events) events, \(dropped) dropped); "
                + "RSS \(mib(rssStart)) at start, \(mib(rssPeak)) peak, \(mib(rssEnd)) at the end"
        }
    }

    /// Records `events` events and waits until the broker confirmed every one.
    public static func run(brokers: String, events: Int, journal: String) async throws -> Result {
        var logger = Logger(label: "acb-bench")
        logger.logLevel = .warning
        let stream = try AuditStream(
            settings: AuditStream.Settings(brokers: brokers, journalDirectory: journal), logger: logger)
        let pid = getpid()
        let rssStart = ServerSampler.residentBytes(pid: pid) ?? 0
        var rssPeak = rssStart
        let started = ContinuousClock.now
        let tenant = "bench-audit-\(UInt32.random(in: 0...UInt32.max))"
        for index in 0..<events {
            stream.record(
                AuditEvent(
                    kind: "message.queued", tenant: tenant, agentID: "agent-\(index % 1_000)", at: WallClock.nowMs(),
                    detail: ["to": "agent-\((index + 1) % 1_000)", "message": "\(index)", "bytes": "256"]))
            if index % 50_000 == 0 { rssPeak = max(rssPeak, ServerSampler.residentBytes(pid: pid) ?? 0) }
        }
        while stream.delivered + stream.dropped < events {
            try await Task.sleep(for: .milliseconds(20))
            rssPeak = max(rssPeak, ServerSampler.residentBytes(pid: pid) ?? 0)
        }
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rssEnd = ServerSampler.residentBytes(pid: pid) ?? 0
        stream.close()
        try? FileManager.default.removeItem(atPath: journal)
        return Result(
            events: events, rate: Double(events) / seconds, rssStart: rssStart, rssPeak: max(rssPeak, rssEnd),
            rssEnd: rssEnd, dropped: stream.dropped)
    }
}
