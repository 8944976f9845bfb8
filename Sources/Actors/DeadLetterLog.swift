public import Bus
import NIOConcurrencyHelpers
public import NIOCore

/// A message the bus gave up on, and why.
public struct DeadLetter: Sendable {
    public var tenant: String
    /// The intended receiver.
    public var agentID: String
    public var from: String
    public var reason: ErrorCode
    public var attempts: UInt16
    public var at: UInt64
    public var payload: ByteBuffer
}

/// The most recent dead letters, in memory and bounded in count and payload bytes (oldest dropped first). Each one is also an
/// audit event, and with a ``MessageStore`` a row in its dead-letter table.
public final class DeadLetterLog: Sendable {
    private let capacity: Int
    private let byteBudget: Int
    private let state = NIOLockedValueBox((letters: CircularBuffer<DeadLetter>(), bytes: 0))

    init(capacity: Int, byteBudget: Int) {
        self.capacity = capacity
        self.byteBudget = byteBudget
    }

    func append(_ letter: DeadLetter) {
        state.withLockedValue { state in
            state.letters.append(letter)
            state.bytes += letter.payload.readableBytes
            while state.letters.count > capacity || state.bytes > byteBudget, let oldest = state.letters.popFirst() {
                state.bytes -= oldest.payload.readableBytes
            }
        }
    }

    /// The tenant's dead letters, oldest first.
    public func letters(of tenant: String) -> [DeadLetter] {
        state.withLockedValue { $0.letters.filter { $0.tenant == tenant } }
    }
}
