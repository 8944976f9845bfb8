import Foundation

/// Samples a server process's resident memory (VmRSS) ten times a second, and counts the CPU
/// time it and the harness used, from start to stop.
final class ServerSampler: Sendable {
    private let pid: Int32
    private let baseline: UInt64
    private let serverCPU: Double
    private let harnessCPU: Double
    private let sampling: Task<UInt64, Never>

    /// Starts sampling `pid`; nil when there is no process to sample.
    init?(pid: Int32?) {
        guard let pid, let baseline = Self.residentBytes(pid: pid), let cpu = Self.cpuSeconds(pid: pid) else {
            return nil
        }
        self.pid = pid
        self.baseline = baseline
        self.serverCPU = cpu
        self.harnessCPU = Self.cpuSeconds(pid: getpid()) ?? 0
        sampling = Task {
            var peak = baseline
            while !Task.isCancelled {
                peak = max(peak, Self.residentBytes(pid: pid) ?? 0)
                try? await Task.sleep(for: .milliseconds(100))
            }
            return peak
        }
    }

    func stop() async -> ResourceUse {
        sampling.cancel()
        let end = Self.residentBytes(pid: pid) ?? 0
        return ResourceUse(
            baseline: baseline, peak: max(await sampling.value, end), end: end,
            serverCPUSeconds: (Self.cpuSeconds(pid: pid) ?? serverCPU) - serverCPU,
            harnessCPUSeconds: (Self.cpuSeconds(pid: getpid()) ?? harnessCPU) - harnessCPU)
    }

    /// The resident set of `pid`, in bytes.
    static func residentBytes(pid: Int32) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kibibytes = UInt64(line.split(separator: " ")[1])
        else { return nil }
        return kibibytes * 1_024
    }

    /// User plus system CPU time of `pid` so far, from /proc/PID/stat (fields 14 and 15, in clock ticks).
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let afterName = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the parenthesised name start at field 3.
        let fields = stat[stat.index(after: afterName)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// What a server used over one scenario: resident memory in bytes, CPU time of it and of the harness.
public struct ResourceUse: Codable, Sendable {
    public var baseline: UInt64
    public var peak: UInt64
    public var end: UInt64
    public var serverCPUSeconds: Double
    public var harnessCPUSeconds: Double

    public var growth: UInt64 { peak.minus(baseline) }
    /// What the server still holds at the end above its baseline.
    public var retained: UInt64 { end.minus(baseline) }
}
