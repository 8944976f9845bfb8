import NIOConcurrencyHelpers

/// Wakes a worker thread that sleeps until there is work: ``signal()`` from any thread,
/// ``wait(seconds:)`` on the worker. A signal given while the worker is busy is not lost.
final class Wakeup: Sendable {
    /// 1 while a signal is pending.
    private let condition = ConditionLock(value: 0)

    func signal() {
        condition.lock()
        condition.unlock(withValue: 1)
    }

    /// Returns when signalled, consuming the signal.
    func wait() {
        condition.lock(whenValue: 1)
        condition.unlock(withValue: 0)
    }

    /// Returns when signalled (consuming the signal) or after `seconds`.
    func wait(seconds: Double) {
        if condition.lock(whenValue: 1, timeoutSeconds: seconds) { condition.unlock(withValue: 0) }
    }
}
