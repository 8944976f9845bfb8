import Bus
import Synchronization

/// Counts the answers to the stored copies of one durable BROADCAST or PUBLISH, from the store's
/// thread, so the sender is answered once, when the last copy is.
final class FanoutStores: Sendable {
    private struct Tally {
        var waiting: Int
        var stored: UInt32 = 0
        var error: BusError?
    }

    private let tally: Mutex<Tally>

    init(receivers: Int) {
        tally = Mutex(Tally(waiting: receivers))
    }

    /// One copy was answered (`error` nil: it is durable).
    /// - Returns: once all are answered, how many are durable, with the last refusal; else nil.
    func answered(_ error: BusError?) -> (stored: UInt32, error: BusError?)? {
        tally.withLock { tally in
            tally.waiting -= 1
            if let error { tally.error = error } else { tally.stored += 1 }
            return tally.waiting == 0 ? (tally.stored, tally.error) : nil
        }
    }
}
