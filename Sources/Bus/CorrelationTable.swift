/// The requests one session is waiting on, keyed by a per-session id, with a hard bound.
///
/// The id sent to responders is ``wireID(session:local:)``: the session number in the high 32 bits
/// and the local id in the low 32, so a reply finds its requester with no global table.
/// Not thread-safe: the owning session serialises access.
public struct CorrelationTable<Pending> {
    public let capacity: Int
    private var entries: [UInt32: Pending] = [:]
    private var nextLocal: UInt32 = 0

    public init(capacity: Int) { self.capacity = capacity }

    public var count: Int { entries.count }

    /// Records a pending request.
    /// - Throws: ``ErrorCode/overloaded`` when `capacity` requests are already waiting.
    public mutating func insert(_ pending: Pending) throws(BusError) -> UInt32 {
        guard entries.count < capacity else {
            throw BusError(.overloaded, "\(capacity) requests already pending", retryAfterMs: 100)
        }
        repeat { nextLocal &+= 1 } while nextLocal == 0 || entries[nextLocal] != nil
        entries[nextLocal] = pending
        return nextLocal
    }

    /// Removes and returns the request `local`; nil if it already completed or timed out.
    public mutating func remove(_ local: UInt32) -> Pending? {
        entries.removeValue(forKey: local)
    }

    /// The pending request `local`; setting changes an existing entry only.
    public subscript(local: UInt32) -> Pending? {
        get { entries[local] }
        set {
            guard entries[local] != nil, let newValue else { return }
            entries[local] = newValue
        }
    }

    /// Removes every pending request (the session is closing).
    public mutating func removeAll() -> [Pending] {
        defer { entries.removeAll() }
        return Array(entries.values)
    }

    /// The correlation id a responder sees.
    public static func wireID(session: UInt32, local: UInt32) -> UInt64 {
        UInt64(session) << 32 | UInt64(local)
    }

    /// Splits a correlation id into the requester's session number and its local id.
    public static func split(_ wireID: UInt64) -> (session: UInt32, local: UInt32) {
        (UInt32(truncatingIfNeeded: wireID >> 32), UInt32(truncatingIfNeeded: wireID))
    }
}
