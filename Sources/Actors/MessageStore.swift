public import Bus

/// Durable storage behind the bus: messages for offline agents, the registry and dead letters.
///
/// Implementations never block the caller: work is queued, batched and done on threads of their
/// own, and completions are called from there.
public protocol MessageStore: Sendable {
    /// Stores a message for an offline receiver; `done` gets nil once it is durable, else why not
    /// (``ErrorCode/storageUnavailable`` when neither the database nor the spool can take it).
    func enqueue(_ message: StoredMessage, done: @escaping @Sendable (BusError?) -> Void)

    /// Hands out up to `limit` stored messages of `agent`, oldest first, counting a delivery
    /// attempt for each. With `resuming`, messages handed out before and never settled (a
    /// previous session or run ended) come again, else only those never handed out.
    ///
    /// A read that succeeds sees every message whose ``enqueue(_:done:)`` completed before the read
    /// was asked for, and messages are stored in the order they were enqueued (sessions rely on both
    /// to keep order, see AgentSession+Backlog).
    func backlog(
        of agent: AgentKey, resuming: Bool, limit: Int,
        done: @escaping @Sendable (Result<[StoredMessage], BusError>) -> Void)

    /// Settles a stored message that was handed out: acknowledged (`reason` nil) or dead-lettered
    /// after `attempts` delivery attempts.
    func settle(_ id: UInt64, attempts: UInt16, deadLetterReason reason: ErrorCode?)

    /// Puts stored messages handed to a session that ended before they were settled back in their
    /// agent's backlog; `done` as for ``enqueue(_:done:)``.
    func release(_ ids: [UInt64], done: @escaping @Sendable (BusError?) -> Void)

    /// Records the dead letter of a message that was never stored.
    func deadLetter(_ message: StoredMessage, reason: ErrorCode)

    /// Records an agent's registration, or its removal (`description` nil); `done` gets nil once it
    /// is durable, else why not (``ErrorCode/storageUnavailable``), as for ``enqueue(_:done:)``.
    func saveAgent(_ key: AgentKey, _ description: AgentDescription?, done: @escaping @Sendable (BusError?) -> Void)

    /// Writes out what is queued; called once, at shutdown, after the sessions closed. May block.
    func close()
}
