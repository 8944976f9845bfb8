import Actors
import Bus
import Foundation
import Hummingbird
import Persistence

/// What the admin API's handlers reach: the supervisor tree, the authenticator, the sidecars.
/// Its routes are added by the extensions in the files named after each resource.
struct AdminAPI: Sendable {
    let supervisor: Supervisor
    let authenticator: Authenticator
    /// PostgreSQL for message status, dead letters and tenants; nil without PostgreSQL.
    let records: AdminStore?
    /// Redis, where upload progress is kept; nil without Redis.
    let redisURL: String?
    let sidecars: Sidecars
    /// The supervised children (the writers' threads, the registry restorer), for readiness and metrics.
    let children: [ChildStatus]
    /// Agents must show client certificates (mTLS required), which HTTP requests do not carry.
    let requiresClientCertificates: Bool
    /// Runs the blocking calls to the sidecars.
    let calls = SidecarCalls()

    /// The writers to the sidecars, where configured, for readiness and metrics.
    struct Sidecars: Sendable {
        var store: PostgresStore?
        var shared: RedisState?
        var auditStream: AuditStream?

        /// Each configured sidecar: whether it takes writes (Kafka: whether its journal has room,
        /// reachable or not), the bytes waiting on disk for it, and the batches written to it since
        /// start (PostgreSQL transactions, Redis pipelines, audit records confirmed by Kafka).
        var states: [(name: String, up: Bool, spooledBytes: Int, batches: Int)] {
            [
                store.map { ("postgres", $0.isConnected, $0.spooledBytes, $0.batches) },
                shared.map { ("redis", $0.isConnected, $0.spooledBytes, $0.batches) },
                auditStream.map { ("kafka", !$0.isFull, $0.pendingBytes, $0.delivered) },
            ].compactMap { $0 }
        }
    }

    /// The caller proven by the request's `Authorization: Bearer` access token.
    /// - Parameter anyRole: accept a token that names no known role (logout: as on the wire, any
    ///   session may log out).
    func caller(_ request: Request, anyRole: Bool = false) async throws(AdminError) -> Caller {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            case let token = String(header.dropFirst("Bearer ".count)), !token.isEmpty
        else { throw AdminError(.unauthenticated, "an Authorization: Bearer <access token> header is required") }
        try refuseWhileShuttingDown()
        let verified: TokenAuthority.Verified
        do {
            verified = try await authenticator.hello(token, certificate: nil, method: "http")
        } catch {
            throw AdminError(error)
        }
        let caller = Caller(verified, operation: "\(request.method) \(request.uri.path)", supervisor: supervisor)
        // As on the wire, a token without a known role may do nothing.
        guard anyRole || !caller.roles.isEmpty else { throw caller.deny("the token grants no known role") }
        return caller
    }

    /// Once the bus drains, its writers close: changes could no longer be stored or audited.
    func refuseWhileShuttingDown() throws(AdminError) {
        guard !supervisor.isShuttingDown else { throw AdminError(.shuttingDown, "the bus is shutting down") }
    }

    /// Runs `body` with the PostgreSQL records on NIO's thread pool (libpq blocks).
    /// - Throws: `unavailable` without PostgreSQL, `storage_unavailable` when it cannot be reached.
    func withRecords<T: Sendable>(_ body: @escaping @Sendable (AdminStore) throws(SidecarError) -> T)
        async throws(AdminError) -> T
    {
        guard let records else { throw AdminError(.unavailable, "this needs PostgreSQL, and the bus runs without") }
        return try await blocking { () throws(SidecarError) in try body(records) }
    }

    /// Runs a blocking sidecar call on the API's own thread (``SidecarCalls``); refused once the
    /// bus shuts down, since the request may have waited for its body or a turn until then.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws(SidecarError) -> T) async throws(AdminError) -> T {
        try refuseWhileShuttingDown()
        return try await calls.run(body)
    }
}

/// A page of a list and the cursor of the next one (absent on the last page).
struct Page<Item: Encodable>: Encodable {
    var items: [Item]
    var nextCursor: String?

    init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }

    /// The page of at most `limit` items from `fetched` (fetched with one more, to tell whether
    /// another page follows), its cursor being `cursor` of the last item kept.
    init(_ fetched: [Item], limit: Int, cursor: (Item) -> String) {
        items = Array(fetched.prefix(limit))
        nextCursor = fetched.count > limit ? items.last.map(cursor) : nil
    }
}
