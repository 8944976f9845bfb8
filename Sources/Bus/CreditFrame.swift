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
