import ACBClient
import Bus
import Foundation
import NIOCore

/// One large payload through the bus, sender to receiver, checksum verified by the receiving client;
/// `sealed`, encrypted by the sender's client and opened (and its plaintext checked) by the receiver's.
extension Bench {
    func stream(_ scenario: Scenario, bytes: UInt64, sealed: Bool = false, names: Names) async throws
        -> ScenarioResult
    {
        guard server.kind == .acb else { throw WireError("streams are ACB's alone") }
        let directory = settings.scratchDirectory + "/acb-bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let receiverName = names.agent("receiver", 0)
        let sender = try await client(
            names.agent("sender", 0), tenant: names.tenant, directory: directory, sealed: sealed)
        let receiver = try await client(receiverName, tenant: names.tenant, directory: directory, sealed: sealed)
        let result: Result<ScenarioResult, any Error>
        do {
            result = .success(
                try await transfer(
                    scenario, bytes: bytes, sealed: sealed, from: sender, to: receiver, named: receiverName))
        } catch {
            result = .failure(error)
        }
        await sender.close()
        await receiver.close()
        return try result.get()
    }

    private func transfer(
        _ scenario: Scenario, bytes: UInt64, sealed: Bool, from sender: ACBClient, to receiver: ACBClient,
        named receiverName: String
    ) async throws -> ScenarioResult {
        let usage = ServerSampler(pid: server.pid)
        let started = ContinuousClock.now
        let arrival = Task {
            for await stream in receiver.streams {
                stream.ack()
                return stream.size
            }
            return 0
        }
        let (progress, label) = (settings.progress, "[\(server.kind.rawValue) \(scenario.id)]")
        try await sender.upload(
            to: .agent(receiverName), from: RepeatingSource(size: bytes),
            progress: { stored, total in
                guard stored % (64 << 20) == 0 || stored == total else { return }
                progress?("\(label) \(stored >> 20) of \(total >> 20) MiB stored by the bus")
            }, sealed: sealed)
        let received = await arrival.value
        let elapsed = started.duration(to: .now)
        var result = ScenarioResult(
            scenario: scenario, server: server.kind, rate: Double(received) / elapsed.seconds / 1e6, unit: "MB/s",
            seconds: elapsed.seconds)
        result.sent = 1
        result.expected = 1
        result.received = received == bytes ? 1 : 0
        result.lost = result.expected - result.received
        result.usage = await usage?.stop()
        result.note =
            sealed
            ? "from the first chunk read to the receiver's opened file: the ciphertext's SHA-256 checked by the bus and the receiver, each message authenticated as the receiver opens it"
            : "from the first chunk read to the receiver's verified file, SHA-256 checked by both ends"
        return result
    }

    private func client(_ name: String, tenant: String, directory: String, sealed: Bool) async throws -> ACBClient {
        var configuration = ClientConfiguration(
            host: server.host, port: server.port, token: try await server.credential(name: name, tenant: tenant),
            clientName: "acb-bench")
        configuration.reconnect = false
        configuration.downloadDirectory = directory
        if sealed { configuration.keys = .generate() }
        return try await ACBClient.connect(configuration)
    }
}

/// `size` bytes of one random mebibyte repeated: a large payload without a large file.
struct RepeatingSource: StreamSource {
    private static let block: ByteBuffer = {
        // Eight bytes per call: a byte per call made a million getrandom system calls, inside the
        // time of the first stream scenario run (4% of a profile of one).
        var generator = SystemRandomNumberGenerator()
        var block = ByteBuffer()
        for _ in 0..<(1 << 17) { block.writeInteger(generator.next() as UInt64) }
        return block
    }()
    let size: UInt64

    func read(offset: UInt64, count: Int) throws -> ByteBuffer {
        let block = Self.block
        let end = min(offset + UInt64(count), size)
        var bytes = ByteBuffer()
        var position = offset
        while position < end {
            let at = Int(position % UInt64(block.readableBytes))
            let length = min(block.readableBytes - at, Int(end - position))
            if position == offset && length == Int(end - offset) { return block.getSlice(at: at, length: length)! }
            bytes.writeImmutableBuffer(block.getSlice(at: at, length: length)!)
            position += UInt64(length)
        }
        return bytes
    }
}
