public import Bus
public import Logging

/// Where audit events go. Implementations must not block: the hot path calls ``record(_:)``.
public protocol AuditSink: Sendable {
    func record(_ event: AuditEvent)
    /// Records several events in order; a sink that can write them at once overrides this.
    func record(_ events: [AuditEvent])
    /// Writes out what is pending; called once, last, at shutdown. It may block until done.
    func close()
    /// Whether recorded events go anywhere: when not, writers need not make them.
    var isRecording: Bool { get }
}

extension AuditSink {
    public var isRecording: Bool { true }

    public func record(_ events: [AuditEvent]) {
        for event in events { record(event) }
    }
}

/// The audit sink of a bus with no audit stream configured: events go to the log at debug level.
public struct LogAuditSink: AuditSink {
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    /// Only when the log takes debug messages.
    public var isRecording: Bool { logger.logLevel <= .debug }

    public func record(_ event: AuditEvent) {
        logger.debug(
            "audit \(event.kind)",
            metadata: [
                "tenant": "\(event.tenant)", "agent": "\(event.agentID)",
                "detail": .dictionary(event.detail.mapValues { .string($0) }),
            ])
    }

    public func close() {}
}

/// Several sinks that each get every event, in the order given: the audit stream and the audit
/// log file when both are configured.
public struct AuditSinks: AuditSink {
    private let sinks: [any AuditSink]

    public init(_ sinks: [any AuditSink]) { self.sinks = sinks }

    public var isRecording: Bool { sinks.contains { $0.isRecording } }

    public func record(_ event: AuditEvent) {
        for sink in sinks { sink.record(event) }
    }

    public func record(_ events: [AuditEvent]) {
        for sink in sinks { sink.record(events) }
    }

    public func close() {
        for sink in sinks { sink.close() }
    }
}
