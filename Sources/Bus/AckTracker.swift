/// Turns "the application is done with delivery N" into as few ACK frames as possible.
///
/// Contiguous ids collapse into one cumulative ACK; ids finished out of order are acknowledged
/// singly until the floor catches up. Not thread-safe: the owner serialises access.
public struct AckTracker: Sendable {
    /// Every id up to this one is done.
    public private(set) var floor: UInt64 = 0
    private var above: Set<UInt64> = []
    private var singles: [UInt64] = []
    private var floorMoved = false

    public init() {}

    /// Records that delivery `id` is done.
    public mutating func done(_ id: UInt64) {
        guard id > floor else { return }
        if id == floor + 1 {
            floor = id
            while above.remove(floor + 1) != nil { floor += 1 }
            floorMoved = true
        } else if above.insert(id).inserted {
            singles.append(id)
        }
    }

    /// The ACKs to send now for everything recorded since the last call.
    public mutating func takeAcks() -> [Ack] {
        var acks: [Ack] = []
        if floorMoved { acks.append(Ack(deliveryID: floor, cumulative: true)) }
        for id in singles where id > floor { acks.append(Ack(deliveryID: id)) }
        floorMoved = false
        singles.removeAll(keepingCapacity: true)
        return acks
    }

    /// Whether ``takeAcks()`` would return anything.
    public var hasPending: Bool { floorMoved || !singles.isEmpty }
}
