import Bus
import NIOCore
import NIOPosix

/// One spooled stream on its way to another node, a part (512 KiB) at a time: each read from the
/// spool file on the thread pool, and handed to Kafka once the one before was taken, so at most one
/// part per stream waits in memory.
final class StreamRelay: Sendable {
    /// Under the 1 MiB a Kafka broker takes per record by default, with room for the record's fields.
    static let partBytes: UInt64 = 512 << 10

    /// Each part is this record with the part's number (`count`) and bytes (`payload`).
    let template: ClusterRecord
    let file: SpoolFile
    let total: UInt64
    let cluster: any ClusterLink
    let node: String
    let pool: NIOThreadPool
    let failed: @Sendable (BusError) -> Void
    /// Called once the last part was taken.
    let sent: @Sendable () -> Void

    init(
        template: ClusterRecord, file: SpoolFile, total: UInt64, cluster: any ClusterLink, node: String,
        pool: NIOThreadPool, failed: @escaping @Sendable (BusError) -> Void, sent: @escaping @Sendable () -> Void
    ) {
        self.template = template
        self.file = file
        self.total = total
        self.cluster = cluster
        self.node = node
        self.pool = pool
        self.failed = failed
        self.sent = sent
    }

    /// Sends part `index` and, once it is taken, the next.
    func send(_ index: UInt32) {
        let offset = UInt64(index) * Self.partBytes
        guard offset < total else { return sent() }
        pool.submit { [self] state in
            guard state == .active else { return failed(BusError(.shuttingDown, "the bus is shutting down")) }
            do throws(BusError) {
                var record = template
                record.count = index
                record.payload = try file.read(
                    count: Int(min(Self.partBytes, total - offset)), at: offset, allocator: ByteBufferAllocator())
                cluster.forward(record, to: node) { [self] error in
                    guard let error else { return send(index + 1) }
                    failed(error)
                }
            } catch {
                failed(error)
            }
        }
    }
}
