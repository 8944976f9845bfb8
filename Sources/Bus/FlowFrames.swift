public import NIOCore

/// CREDIT (protocol 2): more send window. The server sends one right after WELCOME with the whole
/// window, then one each time receivers have taken a share of the messages the session sent.
public struct Credit: FrameBody {
    /// Messages (SEND, BROADCAST, PUBLISH) added to the window.
    public var grant: UInt32

    public init(grant: UInt32) { self.grant = grant }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(grant: try r.u32("grant"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(grant)
    }
}

/// CONFIRM (protocol 2): every SEND, BROADCAST and PUBLISH with a ref up to `ref` that got no
/// answer of its own succeeded. Replaces their OKs, the way a cumulative ACK replaces single ACKs.
public struct Confirm: FrameBody {
    public var ref: UInt64

    public init(ref: UInt64) { self.ref = ref }

    public init(reading r: inout WireReader) throws(BusError) {
        self.init(ref: try r.u64("ref"))
    }

    public func write(to b: inout ByteBuffer) {
        b.writeInteger(ref)
    }
}
