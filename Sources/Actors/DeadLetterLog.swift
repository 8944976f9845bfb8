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

/// The most recent dead letters, in memory and bounded (oldest dropped first). Each one is also an
/// audit event; durable dead-lettering comes with the persistence backend.
public final class DeadLetterLog: Sendable {
    private let capacity: Int
    private let letters = NIOLockedValueBox(CircularBuffer<DeadLetter>())

    init(capacity: Int) { self.capacity = capacity }

    func append(_ letter: DeadLetter) {
        letters.withLockedValue { letters in
            if letters.count == capacity { letters.removeFirst() }
            letters.append(letter)
        }
    }

    /// The tenant's dead letters, oldest first.
    public func letters(of tenant: String) -> [DeadLetter] {
        letters.withLockedValue { $0.filter { $0.tenant == tenant } }
    }
}
