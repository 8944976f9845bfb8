import Logging

/// A writer thread's connection to its sidecar: made when an attempt is due (at once, then with
/// the backoff of ``Reconnect`` after failures), dropped when lost. The first failure of a run is
/// logged, not every retry. Not thread-safe: it belongs to the one thread that writes.
struct SidecarLink<Connection> {
    /// The sidecar's name for the log ("PostgreSQL", "Redis").
    let name: String
    /// What the writer does while the sidecar is away, for the log ("writes are spooled").
    let meanwhile: String
    private(set) var connection: Connection?
    private var reconnect = Reconnect()

    init(name: String, meanwhile: String) {
        self.name = name
        self.meanwhile = meanwhile
    }

    /// The live connection, connecting first if there is none and an attempt is due.
    /// - Returns: the connection (and whether it was made by this call), or nil while the sidecar is away.
    mutating func live(now: UInt64, logger: Logger, connect: () throws(SidecarError) -> Connection) -> (
        connection: Connection, isNew: Bool
    )? {
        if let connection { return (connection, false) }
        guard reconnect.isDue(now: now) else { return nil }
        do throws(SidecarError) {
            let made = try connect()
            reconnect.attempted(succeeded: true, now: now)
            connection = made
            logger.info("connected to \(name)")
            return (made, true)
        } catch {
            if reconnect.isFirstFailure {
                logger.warning("\(name) unavailable: \(meanwhile) until it is back", metadata: ["error": "\(error)"])
            }
            reconnect.attempted(succeeded: false, now: now)
            return nil
        }
    }

    /// The connection failed: the next ``live(now:logger:connect:)`` connects again.
    mutating func lost() { connection = nil }

    var isConnected: Bool { connection != nil }
}

/// When a writer tries a lost sidecar connection again: at once, then after 100 ms, doubling up to 5 s.
struct Reconnect {
    private var delayMs: UInt64 = 100
    private var nextMs: UInt64 = 0

    func isDue(now: UInt64) -> Bool { now >= nextMs }

    /// Whether no attempt failed since the last success: a failure now is the first of a run (worth logging).
    var isFirstFailure: Bool { delayMs == 100 }

    mutating func attempted(succeeded: Bool, now: UInt64) {
        delayMs = succeeded ? 100 : min(2 * delayMs, 5_000)
        nextMs = now + delayMs
    }
}
