import Bus
public import Foundation

/// Everything one harness run measured, as written to JSON.
public struct BenchRun: Codable, Sendable {
    public var date: Date
    public var machine: Machine
    /// The command that reproduces the run.
    public var command: String
    public var seconds: Double
    public var payloadBytes: Int
    public var window: Int
    public var results: [ScenarioResult]

    public init(machine: Machine, command: String, settings: BenchSettings, results: [ScenarioResult]) {
        self.date = Date()
        self.machine = machine
        self.command = command
        self.seconds = settings.seconds
        self.payloadBytes = settings.payloadBytes
        self.window = settings.window
        self.results = results
    }

    public func result(_ scenario: String, on server: ServerUnderTest.Kind) -> ScenarioResult? {
        results.first { $0.scenario == scenario && $0.server == server }
    }

    /// Results with losses, duplicates or unanswered sends: a run that has any failed.
    public var incomplete: [ScenarioResult] { results.filter { !$0.isComplete } }
}

/// The running kernel's release, as `uname -r` prints it.
private func kernelRelease() -> String {
    var names = utsname()
    guard uname(&names) == 0 else { return "unknown" }
    return withUnsafeBytes(of: names.release) { String(nulTerminated: $0) }
}

/// The machine a run was made on.
public struct Machine: Codable, Sendable {
    public var cpu: String
    public var cores: Int
    public var memoryGiB: Double
    public var system: String
    public var servers: [String: String]

    /// This machine; `servers` names each server's version.
    public static func current(servers: [String: String]) -> Machine {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
        let release = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        let pretty = release.split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }
        return Machine(
            cpu: model.map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) }
                ?? "unknown",
            cores: ProcessInfo.processInfo.activeProcessorCount,
            memoryGiB: Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30),
            system: (pretty.map { String($0.dropFirst(12)).replacingOccurrences(of: "\"", with: "") } ?? "Linux")
                + ", Linux " + kernelRelease(),
            servers: servers)
    }
}
