import Synchronization

/// A few libpq connections kept open between calls, for callers that come and go (LOGIN and
/// REFRESH, the admin API): a call takes an idle connection or opens one, and gives it back
/// unless it was lost. At most ``maxIdle`` wait between calls; calls at once beyond that open
/// connections of their own, closed after use. Calls block in libpq: make them from a thread pool.
final class PostgresPool: Sendable {
    let url: String
    let maxIdle: Int
    /// Run once on each new connection (session settings such as a statement timeout).
    private let setup: String?
    private let idle = Mutex<[Idle]>([])

    /// A connection while it waits in the pool.
    // @unchecked Sendable, proof: a connection is used by one thread at a time. A call takes it out
    // of the pool (under the pool's lock) before its first use and puts it back after its last;
    // while it is in the pool, no thread uses it.
    private final class Idle: @unchecked Sendable {
        let connection: PostgresConnection
        init(_ connection: PostgresConnection) { self.connection = connection }
    }

    init(url: String, maxIdle: Int, setup: String? = nil) {
        self.url = url
        self.maxIdle = maxIdle
        self.setup = setup
    }

    /// Runs `body` on a connection of the pool. A kept connection found dead (PostgreSQL restarted,
    /// an idle timeout) is dropped and `body` runs again on a new one: callers pass statements that
    /// may run twice (reads, upserts).
    /// - Throws: when no connection can be opened, or `body`'s error.
    func withConnection<R>(_ body: (PostgresConnection) throws(SidecarError) -> R) throws(SidecarError) -> R {
        if let kept = idle.withLock({ $0.popLast() }) {
            do throws(SidecarError) {
                return try run(body, on: kept.connection)
            } catch  where error.connectionLost {
                // Dead while it waited: try once more on a new connection.
            }
        }
        let connection = try PostgresConnection(url: url)
        if let setup { try connection.execute(setup) }
        return try run(body, on: connection)
    }

    private func run<R>(_ body: (PostgresConnection) throws(SidecarError) -> R, on connection: PostgresConnection)
        throws(SidecarError) -> R
    {
        do throws(SidecarError) {
            let result = try body(connection)
            giveBack(connection)
            return result
        } catch {
            if !error.connectionLost { giveBack(connection) }
            throw error
        }
    }

    /// Connections waiting for a call.
    var idleCount: Int { idle.withLock { $0.count } }

    private func giveBack(_ connection: PostgresConnection) {
        let waiting = Idle(connection)
        idle.withLock { idle in
            if idle.count < maxIdle { idle.append(waiting) }
        }
    }
}
