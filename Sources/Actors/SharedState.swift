public import Bus

/// State the bus keeps outside its process with a time to live (Redis): who is online, and the
/// idempotency keys, so deduplication survives a restart. Implementations never block the caller.
public protocol SharedState: Sendable {
    /// The agent's live session opened (`online`) or ended.
    func presence(_ key: AgentKey, online: Bool)
    /// Every agent online now, from the routing table: refreshes presence, and heals what a
    /// session opening while another retired got wrong.
    func online(_ agents: [AgentKey])
    /// Remembers the result of an idempotent command (see ``IdempotentResult/encoded``) for `ttlMs`.
    func rememberIdempotencyKey(_ scopedKey: String, result: String, ttlMs: UInt64)
    /// Remembers a token's state (revoked, or a refresh family's current token) for `ttlMs`,
    /// under `acb:token:<key>`.
    func rememberToken(_ key: String, value: String, ttlMs: UInt64)
    /// Records how far an upload of `agent` is stored, for as long as it can be resumed.
    func uploadProgress(
        _ agent: AgentKey, streamID: String, chunks: UInt32, bytes: UInt64, of total: UInt64, ttlMs: UInt64)

    /// Keeps `value` (a context's copy) under `acb:ctx:<tenant>/<id>` for `ttlMs` (0: no expiry),
    /// or removes it (`value` nil). Write-behind: readers inside the bus never read it.
    func mirrorContext(tenant: String, id: String, value: String?, ttlMs: UInt64)

    /// Writes out what is queued; called once, at shutdown, after the sessions closed. May block.
    func close()
}
