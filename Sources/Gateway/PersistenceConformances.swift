public import Actors
import Bus
import Persistence

// The persistence types implement the protocols the actor tree declares (Persistence does not
// depend on Actors: dependencies point one way, and the gateway joins the two).

extension PostgresStore: MessageStore {}

extension RedisState: SharedState {}

extension PostgresContextStore: ContextStorage {}

extension PostgresKeyStore: KeyStorage {}

/// The audit sink that journals every event for the Kafka audit stream.
struct AuditStreamSink: AuditSink {
    let stream: AuditStream

    func record(_ event: AuditEvent) { stream.record(event) }

    /// One journal write for all of them.
    func record(_ events: [AuditEvent]) { stream.record(events) }

    func close() { stream.close() }
}

extension ClusterNode: ClusterLink {}
