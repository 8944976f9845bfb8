import Bus
import Logging
import NIOPosix
import Persistence
import Synchronization

/// Runs the admin API's blocking sidecar calls (libpq, hiredis) on a thread of its own, so
/// operators never hold up agents' logins on NIO's shared pool, with at most ``limit`` calls
/// waiting or running.
final class SidecarCalls: Sendable {
    /// Calls waiting or running at most; one more is refused with 503 `overloaded`.
    static let limit = 64
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let waiting = Atomic(0)
    private let logger = Logger(label: "acb.admin")

    init() {
        pool.start()
    }

    /// Runs `body` on the thread. A sidecar that cannot be reached is `storage_unavailable` (retry);
    /// a refusal that a retry would meet again is `internal`, with the detail in the log.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(SidecarError) -> T) async throws(AdminError) -> T {
        guard waiting.add(1, ordering: .relaxed).newValue <= Self.limit else {
            waiting.subtract(1, ordering: .relaxed)
            throw AdminError(.overloaded, "too many operator requests wait for the sidecars", retryAfterMs: 1000)
        }
        defer { waiting.subtract(1, ordering: .relaxed) }
        do {
            return try await pool.runIfActive { try body() }
        } catch let error as SidecarError where error.isPermanent {
            logger.error("an admin query failed", metadata: ["error": "\(error)"])
            throw AdminError(.internal, "the database refused the query; the detail is in the log")
        } catch {
            throw AdminError(.storageUnavailable, "a sidecar cannot be reached now", retryAfterMs: 1000)
        }
    }

    /// Stops the thread once the calls queued have run.
    func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}
