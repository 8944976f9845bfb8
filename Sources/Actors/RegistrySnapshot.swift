import Bus
import Foundation

/// The registry as a local file beside the sidecars' spools, so that a bus started while
/// PostgreSQL is unreachable still knows its agents (docs/protocol.md §4.6).
///
/// The supervisor's housekeeping writes it whole when the registry has changed (a temporary file,
/// then a rename, so a crash leaves the old or the new one) on its thread pool; the bus reads it at
/// start only when PostgreSQL does not answer. It is a cache: PostgreSQL stays the record.
struct RegistrySnapshot: Codable {
    /// One registered agent.
    struct Agent: Codable {
        var tenant: String
        var agent: String
        var type: String
        var capabilities: [String]
        var location: String
        var metadata: [[String]]
    }

    var agents: [Agent]

    init(_ agents: [AgentKey: AgentDescription]) {
        self.agents = agents.map { key, description in
            Agent(
                tenant: key.tenant, agent: key.agentID, type: description.agentType,
                capabilities: description.capabilities, location: description.location,
                metadata: description.metadata.map { [$0.key, $0.value] })
        }
    }

    /// The agents of the snapshot at `path`; none when there is no file.
    /// - Throws: when the file exists but cannot be read or decoded.
    static func read(from path: String) throws -> [(AgentKey, AgentDescription)] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let snapshot = try JSONDecoder().decode(Self.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        return snapshot.agents.map { agent in
            (
                AgentKey(tenant: agent.tenant, agentID: agent.agent),
                AgentDescription(
                    agentType: agent.type, capabilities: agent.capabilities, location: agent.location,
                    metadata: agent.metadata.compactMap { pair in
                        pair.count == 2 ? MetadataEntry(key: pair[0], value: pair[1]) : nil
                    })
            )
        }
    }

    /// Replaces the file at `path` with this snapshot, atomically.
    func write(to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONEncoder().encode(self).write(to: url, options: .atomic)
    }
}
