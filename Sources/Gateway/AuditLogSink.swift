import Actors
import Bus
import Persistence

/// The audit sink that appends every event to an ``AuditLogWriter`` file.
struct AuditLogSink: AuditSink {
    let writer: AuditLogWriter

    func record(_ event: AuditEvent) {
        writer.append(event)
    }

    func close() {
        writer.close()
    }
}
