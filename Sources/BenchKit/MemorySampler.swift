import Foundation

/// Samples a process's resident memory (VmRSS in /proc) ten times a second until stopped.
final class MemorySampler: Sendable {
    private let pid: Int32
    private let baseline: UInt64
    private let sampling: Task<UInt64, Never>

    /// Starts sampling `pid`; nil when there is no process to sample.
    init?(pid: Int32?) {
        guard let pid, let baseline = Self.residentBytes(pid: pid) else { return nil }
        self.pid = pid
        self.baseline = baseline
        sampling = Task {
            var peak = baseline
            while !Task.isCancelled {
                peak = max(peak, Self.residentBytes(pid: pid) ?? 0)
                try? await Task.sleep(for: .milliseconds(100))
            }
            return peak
        }
    }

    func stop() async -> MemoryUse {
        sampling.cancel()
        let end = Self.residentBytes(pid: pid) ?? 0
        let peak = max(await sampling.value, end)
        return MemoryUse(baseline: baseline, peak: peak, end: end)
    }

    /// The resident set of `pid`, in bytes.
    static func residentBytes(pid: Int32) -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kibibytes = UInt64(line.split(separator: " ")[1])
        else { return nil }
        return kibibytes * 1_024
    }
}
