public import Bus
import Foundation
public import Logging
import NIOConcurrencyHelpers

/// Appends audit events to a file as JSON lines (see ``AuditRecord``), from a thread of its own,
/// each with an `id` of the same form as the audit stream's (`<run>-<n>`).
///
/// ``append(_:)`` never blocks: it queues the event and wakes the writer. The queue is bounded;
/// when it is full the event is dropped and counted in ``dropped`` (the bus keeps running; a full
/// queue means the disk cannot keep up). ``close()`` writes what is queued and stops the thread.
public final class AuditLogWriter: Sendable {
    private struct Queue {
        var events: [AuditEvent] = []
        var dropped = 0
        var closed = false
    }

    public let path: String
    public let capacity: Int
    private let queue = NIOLockedValueBox(Queue())
    private let worker = WorkerThread(name: "audit-log")
    private let handle: FileHandle

    /// Opens `path` for appending (creating it) and starts the writer thread, which logs its
    /// failures to `logger`.
    /// - Throws: ``ErrorCode/internal`` when the file cannot be opened.
    public init(path: String, capacity: Int = 65_536, logger: Logger) throws(BusError) {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw BusError(.internal, "cannot open audit log \(path)")
        }
        handle.seekToEndOfFile()
        self.path = path
        self.capacity = capacity
        self.handle = handle
        worker.start(logger: logger) { [self] in try writeLoop() }
    }

    /// Queues an event. - Returns: false if the queue was full and the event was dropped.
    @discardableResult
    public func append(_ event: AuditEvent) -> Bool {
        let accepted = queue.withLockedValue { queue in
            guard !queue.closed, queue.events.count < capacity else {
                queue.dropped += 1
                return false
            }
            queue.events.append(event)
            return true
        }
        if accepted { worker.wake() }
        return accepted
    }

    /// Its thread as a supervised child (/readyz, /metrics).
    public var child: ChildStatus { worker.status }

    /// Events dropped because the queue was full, the writer was closed, or the file refused a write.
    public var dropped: Int { queue.withLockedValue { $0.dropped } }

    /// Writes everything queued, then stops the writer thread and closes the file.
    public func close() {
        queue.withLockedValue { $0.closed = true }
        worker.stop()
        worker.join()
    }

    private func writeLoop() throws {
        let run = WallClock.nowMs()
        var next: UInt64 = 0
        while true {
            worker.sleep()
            try worker.checkpoint()
            let (events, closed) = queue.withLockedValue { queue in
                defer { queue.events.removeAll(keepingCapacity: true) }
                return (queue.events, queue.closed)
            }
            var lines: [UInt8] = []
            for event in events {
                lines += AuditRecord.json(event, id: "\(run)-\(next)")
                next += 1
                lines.append(0x0A)
            }
            if !lines.isEmpty, (try? handle.write(contentsOf: Data(lines))) == nil {
                queue.withLockedValue { $0.dropped += events.count }
            }
            if closed { break }
        }
        try? handle.close()
    }
}
