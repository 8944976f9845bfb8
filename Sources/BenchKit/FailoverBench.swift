import ACBClient
import Bus
import Foundation
import Gateway
import NIOConcurrencyHelpers
import NIOCore

/// How long a cluster takes to carry a dead node's agents' traffic again (docs/cluster.md).
///
/// Receivers connect to the node to kill, their clients knowing the other nodes; a sender on
/// another node sends each of them a message every 10 ms. Once every receiver has one, the node is
/// killed with SIGKILL. A receiver's recovery is the time from the kill to the first message sent
/// after it that the receiver gets: its client noticed, connected to another node, and the
/// sender's node routed to it there (messages sent to the dead node meanwhile are lost, as plain
/// messages are in the crash of one bus).
public enum FailoverBench {
    /// Runs it and returns the report.
    /// - Parameters:
    ///   - victim: the node the receivers connect to, and `pid` its process.
    ///   - others: the other nodes; the sender connects to the first.
    public static func run(
        victim: (host: String, port: Int), pid: Int32, others: [(host: String, port: Int)], secret: String,
        receivers count: Int
    ) async throws -> String {
        guard let senderNode = others.first else { throw WireError("failover needs another node (--acb-node)") }
        let authority = try await TokenAuthority(secret: secret)
        let tenant = "failover-\(UInt32.random(in: .min ... .max))"
        func client(_ name: String, at node: (host: String, port: Int), otherNodes: [(host: String, port: Int)])
            async throws -> ACBClient
        {
            let token = try await authority.issue(
                Identity(tenant: tenant, agentID: name, roles: [Role.agentFull.rawValue]), ttl: 3_600)
            var configuration = ClientConfiguration(host: node.host, port: node.port, token: token)
            configuration.otherNodes = otherNodes.map { NodeAddress(host: $0.host, port: $0.port) }
            return try await ACBClient.connect(configuration)
        }
        let names = (0..<count).map { "r\($0)" }
        var clients: [ACBClient] = []
        // Per receiver, when it first got a message sent after the kill (0: not yet).
        let recovered = NIOLockedValueBox([UInt64](repeating: 0, count: count))
        let warm = NIOLockedValueBox(Set<Int>())
        let killedAt = NIOLockedValueBox<UInt64>(.max)
        var readers: [Task<Void, Never>] = []
        for (index, name) in names.enumerated() {
            let receiver = try await client(name, at: victim, otherNodes: others)
            clients.append(receiver)
            readers.append(
                Task {
                    for await delivery in receiver.deliveries {
                        delivery.ack()
                        guard
                            let sentAt = delivery.payload.getInteger(at: delivery.payload.readerIndex, as: UInt64.self)
                        else { continue }
                        let now = Stamp.now()
                        warm.withLockedValue { _ = $0.insert(index) }
                        if sentAt > killedAt.withLockedValue({ $0 }) {
                            recovered.withLockedValue { if $0[index] == 0 { $0[index] = now } }
                        }
                    }
                })
        }
        let sender = try await client("sender", at: senderNode, otherNodes: [])
        let sending = Task {
            while !Task.isCancelled {
                for name in names {
                    var payload = ByteBuffer()
                    payload.writeInteger(Stamp.now())
                    // Refused or lost while the receiver is between nodes: the next one is sent 10 ms later.
                    _ = try? await sender.send(to: .agent(name), payload)
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        defer {
            sending.cancel()
            readers.forEach { $0.cancel() }
        }
        try await until(seconds: 30, "every receiver to get a message before the kill") {
            warm.withLockedValue { $0.count } == count
        }
        let kill = Stamp.now()
        killedAt.withLockedValue { $0 = kill }
        guard Foundation.kill(pid, SIGKILL) == 0 else { throw WireError("cannot kill process \(pid)") }
        try await until(seconds: 60, "every receiver to get messages on another node") {
            !recovered.withLockedValue { $0.contains(0) }
        }
        sending.cancel()
        for client in clients + [sender] { await client.close() }
        let times = recovered.withLockedValue { $0 }.map { Double($0 - kill) / 1e6 }.sorted()
        func ms(_ value: Double) -> String { String(format: "%.0f ms", value) }
        return """
            failover: \(count) receivers on the killed node (pid \(pid)), a sender on \(senderNode.host):\(senderNode.port)
            from SIGKILL to each receiver's first message on another node: \
            min \(ms(times[0])), median \(ms(times[count / 2])), max \(ms(times[count - 1]))
            """
    }

    /// Polls `condition` every 10 ms; throws after `seconds`.
    private static func until(seconds: Double, _ what: String, _ condition: () -> Bool) async throws {
        let deadline = Stamp.now() + UInt64(seconds * 1e9)
        while !condition() {
            guard Stamp.now() < deadline else { throw WireError("failover: no \(what) within \(Int(seconds)) s") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
