public import NIOCore

/// The deliveries a session has written and the receiver has not acknowledged yet.
///
/// Delivery ids increase by one per write, so an ACK may be cumulative. A redelivery gets a new id
/// (keeping ids monotonic on the wire) and one more attempt. Bounded by `capacity`: the session stops
/// writing while it is full. Not thread-safe: the owning session serialises access.
///
/// Inlinable, so the session's module specialises it for its own items: unspecialised, every call
/// looked up generic metadata at run time, a tenth of the server's time under load.
public struct DeliveryWindow<Item> {
    /// One unacknowledged delivery.
    public struct Entry {
        public var id: UInt64
        public var item: Item
        /// 1 for the first delivery.
        public var attempt: UInt16
        /// When it was written, in the caller's clock (milliseconds).
        public var sentAt: UInt64

        @inlinable
        init(id: UInt64, item: Item, attempt: UInt16, sentAt: UInt64) {
            self.id = id
            self.item = item
            self.attempt = attempt
            self.sentAt = sentAt
        }
    }

    public let capacity: Int
    /// Id of `slots.first`; slots hold nil once acknowledged.
    @usableFromInline var baseID: UInt64 = 1
    /// Grown on demand from one slot (NIO's default of 16 would cost every idle session).
    @usableFromInline var slots = CircularBuffer<Entry?>(initialCapacity: 1)
    @usableFromInline var outstanding = 0

    public init(capacity: Int) { self.capacity = capacity }

    /// Deliveries written and not yet acknowledged.
    @inlinable public var count: Int { outstanding }

    @inlinable public var hasRoom: Bool { outstanding < capacity }

    /// Deliveries that may still be written before the window is full.
    @inlinable public var room: Int { capacity - outstanding }

    /// The id the next ``send(_:attempt:now:)`` will use.
    @inlinable public var nextID: UInt64 { baseID + UInt64(slots.count) }

    /// Records a delivery about to be written and returns its id.
    @inlinable
    public mutating func send(_ item: Item, attempt: UInt16, now: UInt64) -> UInt64 {
        let id = nextID
        slots.append(Entry(id: id, item: item, attempt: attempt, sentAt: now))
        outstanding += 1
        return id
    }

    /// Acknowledges `id`, or every id up to it when `cumulative`; unknown ids are ignored.
    /// - Parameter released: called with each acknowledged item (not collected: an ACK arrives
    ///   per read batch, and most callers need nothing of them).
    /// - Returns: how many deliveries this acknowledged.
    @inlinable
    @discardableResult
    public mutating func ack(_ id: UInt64, cumulative: Bool, released: (Item) -> Void = { _ in }) -> Int {
        guard id >= baseID, id < nextID else { return 0 }
        var acked = 0
        if cumulative {
            while baseID <= id, let slot = slots.popFirst() {
                baseID += 1
                if let entry = slot {
                    acked += 1
                    released(entry.item)
                }
            }
        } else if let entry = take(id) {
            acked = 1
            released(entry.item)
        }
        outstanding -= acked
        trimFront()
        return acked
    }

    /// Removes `id` (a NACK) and returns it for redelivery or dead-lettering.
    @inlinable
    public mutating func remove(_ id: UInt64) -> Entry? {
        guard id >= baseID, id < nextID, let entry = take(id) else { return nil }
        outstanding -= 1
        trimFront()
        return entry
    }

    /// Restarts the acknowledgement clock of `id` (a long stream delivery still being written).
    /// Entries are expired front to back, so one touched entry may delay the expiry of younger ones.
    /// - Returns: false if `id` is no longer outstanding (acknowledged, withdrawn or expired).
    @discardableResult
    public mutating func touch(_ id: UInt64, now: UInt64) -> Bool {
        guard id >= baseID, id < nextID else { return false }
        let index = slots.index(slots.startIndex, offsetBy: Int(id - baseID))
        guard slots[index] != nil else { return false }
        slots[index]?.sentAt = now
        return true
    }

    /// Removes and returns every entry written at or before `now - timeout`, oldest first.
    public mutating func expire(now: UInt64, timeout: UInt64) -> [Entry] {
        var expired: [Entry] = []
        var index = slots.startIndex
        while index != slots.endIndex {
            if let entry = slots[index] {
                guard entry.sentAt + timeout <= now else { break }
                expired.append(entry)
                slots[index] = nil
            }
            index = slots.index(after: index)
        }
        outstanding -= expired.count
        trimFront()
        return expired
    }

    /// Removes and returns every entry (the session is closing), oldest first.
    public mutating func removeAll() -> [Entry] {
        let all = slots.compactMap { $0 }
        baseID = nextID
        slots.removeAll()
        outstanding = 0
        return all
    }

    @inlinable
    mutating func take(_ id: UInt64) -> Entry? {
        let index = slots.index(slots.startIndex, offsetBy: Int(id - baseID))
        defer { slots[index] = nil }
        return slots[index]
    }

    @inlinable
    mutating func trimFront() {
        while let first = slots.first, first == nil {
            slots.removeFirst()
            baseID += 1
        }
    }
}
