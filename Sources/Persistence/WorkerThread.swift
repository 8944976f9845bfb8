import Foundation
import NIOConcurrencyHelpers

/// The thread of a sidecar writer. ``start(_:)`` runs its loop; ``wake()``, from any thread, rouses
/// it from ``sleep()`` or ``sleep(seconds:)`` (a wake given while it works is not lost); ``join()``
/// waits until the loop has returned.
final class WorkerThread: Sendable {
    /// 1 while a wake is pending.
    private let wakeup = ConditionLock(value: 0)
    private let finished = ConditionLock(value: 0)

    func start(_ loop: @escaping @Sendable () -> Void) {
        Thread.detachNewThread { [self] in
            loop()
            finished.lock()
            finished.unlock(withValue: 1)
        }
    }

    func wake() {
        wakeup.lock()
        wakeup.unlock(withValue: 1)
    }

    /// Returns when woken, consuming the wake.
    func sleep() {
        wakeup.lock(whenValue: 1)
        wakeup.unlock(withValue: 0)
    }

    /// Returns when woken (consuming the wake) or after `seconds`.
    func sleep(seconds: Double) {
        if wakeup.lock(whenValue: 1, timeoutSeconds: seconds) { wakeup.unlock(withValue: 0) }
    }

    func join() {
        finished.lock(whenValue: 1)
        finished.unlock()
    }
}
