package import Bus
import Foundation
package import Logging
import NIOConcurrencyHelpers
import Synchronization

/// The thread of a sidecar writer, and its supervisor. ``start(logger:_:)`` runs its loop; when the
/// loop throws, the failure is logged and recorded in ``status`` and the loop runs again after a
/// backoff (``Restarts``), cut short only by ``stop()``; when it returns, the thread ends.
/// ``wake()``, from any thread, rouses it from ``sleep()`` or ``sleep(seconds:)`` (a wake given while
/// it works is not lost); ``join()`` waits until the thread has ended.
///
/// Only failures the loop throws are caught: a crash of the process is the service manager's to
/// restart, and the spools and journals make that lose nothing acknowledged.
package final class WorkerThread: Sendable {
    /// 1 while a wake is pending.
    private let wakeup = ConditionLock(value: 0)
    private let finished = ConditionLock(value: 0)
    private let stopping = Atomic<Bool>(false)
    package let status: ChildStatus

    /// - Parameter name: the child's name in /readyz and /metrics.
    package init(name: String) {
        status = ChildStatus(name: name)
    }

    package func start(logger: Logger, _ loop: @escaping @Sendable () throws -> Void) {
        Thread.detachNewThread { [self] in
            var restarts = Restarts()
            while true {
                do {
                    try loop()
                    break
                } catch  where stopping.load(ordering: .relaxed) {
                    // Shutting down: one more run was its chance to finish; no restarts without end.
                    logger.error("\(status.name) failed while stopping", metadata: ["error": "\(error)"])
                    break
                } catch {
                    let now = MonotonicClock.nowMs()
                    let delay = restarts.failed(now: now)
                    status.failed(error, escalated: restarts.isEscalated, now: WallClock.nowMs())
                    logger.error(
                        "\(status.name) failed; restarting",
                        metadata: [
                            "error": "\(error)", "restarts": "\(status.current.restarts)",
                            "in_ms": "\(Int(delay * 1_000))",
                        ])
                    let until = now + UInt64(delay * 1_000)
                    while !stopping.load(ordering: .relaxed) {
                        let now = MonotonicClock.nowMs()
                        guard now < until else { break }
                        sleep(seconds: Double(until - now) / 1_000)
                    }
                    status.running()
                    wake()  // the loop's first wait returns at once: work may have queued meanwhile
                }
            }
            status.stopped()
            finished.lock()
            finished.unlock(withValue: 1)
        }
    }

    /// Where the loop may fail on purpose (``ChildStatus/injectFaults(_:)``): call it at the top of
    /// each round, before taking work, so a failure there loses nothing.
    package func checkpoint() throws {
        try status.checkpoint()
    }

    /// The owner closes: wakes the thread and ends a backoff, so the loop runs once more to finish.
    package func stop() {
        stopping.store(true, ordering: .relaxed)
        wake()
    }

    package func wake() {
        wakeup.lock()
        wakeup.unlock(withValue: 1)
    }

    /// Returns when woken, consuming the wake.
    package func sleep() {
        wakeup.lock(whenValue: 1)
        wakeup.unlock(withValue: 0)
    }

    /// Returns when woken (consuming the wake) or after `seconds`.
    package func sleep(seconds: Double) {
        if wakeup.lock(whenValue: 1, timeoutSeconds: seconds) { wakeup.unlock(withValue: 0) }
    }

    package func join() {
        finished.lock(whenValue: 1)
        finished.unlock()
    }
}
