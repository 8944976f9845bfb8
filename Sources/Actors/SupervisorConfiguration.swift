public import Bus

/// Settings of the supervisor tree and its sessions. Every default is safe for production.
public struct SupervisorConfiguration: Sendable {
    /// Limits announced in WELCOME and enforced per session.
    public var limits = Limits()
    /// A delivery not acknowledged within this many milliseconds is sent again.
    public var ackTimeoutMs: UInt64 = 30_000
    /// Deliveries are attempted this many times, then dead-lettered.
    public var maxDeliveryAttempts: UInt16 = 5
    /// An agent silent for this many heartbeat intervals is offline and its session closed.
    public var missedHeartbeats: UInt32 = 3
    /// Deliveries waiting for a session beyond its unacked window; a full mailbox refuses with `overloaded`.
    public var mailboxCapacity = 4_096
    /// The send window of a protocol 2 session: SEND, BROADCAST and PUBLISH it may have in the bus
    /// (not yet taken by their receivers); announced with CREDIT after WELCOME and given back as
    /// receivers take them.
    public var sendWindow: UInt32 = 1_024
    /// A session whose mailbox stays full this long is disconnected with `slow_consumer`.
    public var slowConsumerTimeoutMs: UInt64 = 10_000
    /// How long idempotency keys are remembered.
    public var idempotencyWindowMs: UInt64 = 60_000
    /// Most idempotency keys remembered at once (oldest forgotten first).
    public var idempotencyCapacity = 100_000
    /// Most reply bytes the idempotency window keeps to answer retried requests (oldest forgotten first).
    public var idempotencyBytes = 64 << 20
    /// Deadline of a request that names none.
    public var defaultRequestTimeoutMs: UInt64 = 30_000
    /// Longest deadline a request may ask for.
    public var maxRequestTimeoutMs: UInt64 = 600_000
    /// Where stream uploads are spooled; created if missing.
    public var streamDirectory = "/tmp/acb-streams"
    /// Largest streamed payload accepted.
    public var maxStreamBytes: UInt64 = 64 << 30
    /// How long a broken upload can be resumed.
    public var streamResumeTTLMs: UInt64 = 600_000
    /// How long deliveries of a disconnected agent wait for it to come back before they are
    /// dead-lettered (reason `offline`). Checked by the supervisor's housekeeping.
    public var orphanTTLMs: UInt64 = 3_600_000
    /// How long a message stored for an offline agent waits for it (unless its deadline is
    /// sooner) before it is dead-lettered with reason `deadline_exceeded`.
    public var storedMessageTTLMs: UInt64 = 7 * 86_400_000
    /// Tenants whose SEND, BROADCAST and PUBLISH are durable without asking (the frame's `durable`
    /// flag, docs/protocol.md 5.1b); `*` names every tenant. Needs a store.
    public var durableTenants: Set<String> = []
    /// Agents whose SEND, BROADCAST and PUBLISH are durable without asking, as ``durableTenants`` but
    /// one agent at a time. Needs a store.
    public var durableAgents: Set<AgentKey> = []
    /// Commands (frames that start work: SEND, BROADCAST, PUBLISH, REQUEST, STREAM_OPEN, REGISTER,
    /// SUBSCRIBE) one agent may send per second, on average; 0 turns the limit off. One more is
    /// refused with `rate_limited` and the time until the next is allowed.
    public var rateLimitPerSecond: Double = 100_000
    /// Commands an idle agent may send at once before ``rateLimitPerSecond`` applies.
    public var rateLimitBurst: UInt32 = 200_000
    /// Housekeeping tick of each session: redelivery, heartbeat and slow-consumer checks.
    public var tickMs: UInt64 = 250
    /// Where the registry's local snapshot is kept (``RegistrySnapshot``), beside the spools; nil
    /// keeps none (without a store the registry lives in memory only).
    public var registrySnapshotPath: String?
    /// Requests from agents on other nodes of the cluster that this node's agents may be answering
    /// at once, and (a bound of its own) context writes of this node's callers waiting for their
    /// tenant's home on another node; one more is refused with `overloaded`.
    public var remoteRequestCapacity = 100_000
    /// Housekeeping tick of the supervisor: expiry of orphaned deliveries and parked uploads.
    public var housekeepingMs: UInt64 = 1_000

    /// Versions kept per context (tombstones included); older ones are compacted, and a watch
    /// cannot resume before the oldest kept.
    public var contextHistory = 16
    /// Most bytes the bus keeps for contexts (bodies of kept versions, plus a fixed cost per
    /// version); a write that would go over is refused with `overloaded`.
    public var contextBytes = 512 << 20
    /// Largest context body, uploaded as a stream (inline bodies stop at
    /// ``Limits/maxInlinePayload``); it counts against ``contextBytes`` like any body.
    public var contextBodyBytes = 64 << 20
    /// Context events one session holds undelivered; a watch whose event does not fit ends (its
    /// agent watches again from the last position it saw).
    public var watchQueueCapacity = 4_096
    /// Watches one session may hold.
    public var maxWatchesPerSession = 64

    public init() {}
}
