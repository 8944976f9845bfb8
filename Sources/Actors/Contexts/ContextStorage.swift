public import Bus
import Foundation

/// Durable storage behind contexts (PostgreSQL). The ``ContextService`` is the authority while the
/// bus runs; storage keeps what it committed, so a restart reads it back.
///
/// Implementations never block the caller: records are queued and committed in batches (group
/// commit) on a thread of their own, in the order submitted, and each batch's outcome is reported
/// from there, in order.
public protocol ContextStorage: Sendable {
    /// Sets where outcomes go; called once, before the first ``submit(_:keep:)``.
    func start(_ report: @escaping @Sendable (ContextStorageOutcome) -> Void)
    /// Queues `record` for the next batch; the same commit removes the context's versions older
    /// than the newest `keep`.
    /// - Returns: false, queueing nothing, when the queue is full or the database is unreachable.
    func submit(_ record: ContextRecord, keep: Int) -> Bool
    /// Takes back what is queued and not yet in a batch (it was built on records that failed).
    func discardQueued() -> [ContextRecord]
    /// Commits what is queued, then stops; called once, at shutdown. May block.
    func close()
    /// Every kept version of `tenant`'s contexts, oldest first per context (a node of a cluster
    /// that becomes the tenant's home reads them again). Blocks: call it where waiting is fine.
    func load(tenant: String) throws(BusError) -> [ContextRecord]
    /// Makes `node` the home of `tenant`'s contexts in storage, before it reads them again (a
    /// cluster's fence, docs/cluster.md): from then on an earlier home's commits of the tenant
    /// are refused. Blocks: call it where waiting is fine.
    func claimHome(of tenant: String, node: String) throws(BusError)
    /// The tenants whose commits were refused since the last call because another node claimed
    /// their home since this one did: this node must claim them again before it writes them.
    func takeFenced() -> Set<String>
}

extension SharedState {
    /// Keeps a copy of a committed context version in the shared state (Redis): small live ones
    /// as JSON (`version`, `content_type`, `checksum` in hex, `body` in base64) until they expire;
    /// anything else removes the copy.
    func mirrorContext(_ record: ContextRecord) {
        let head = record.head
        let now = WallClock.nowMs()
        guard head.state == .live, record.body.count <= Limits.maxEventBody, !head.isExpired(now: now) else {
            return mirrorContext(tenant: record.tenant, id: head.id, value: nil, ttlMs: 0)
        }
        let value = JSONValue.object([
            "version": .number(Double(head.version)), "content_type": .string(head.attributes.contentType.mime),
            "checksum": .string(head.checksumHex), "body": .string(Data(record.body).base64EncodedString()),
        ])
        mirrorContext(
            tenant: record.tenant, id: head.id, value: String(decoding: value.serialized(), as: UTF8.self),
            ttlMs: head.expiresMs == 0 ? 0 : head.expiresMs - now)
    }
}
