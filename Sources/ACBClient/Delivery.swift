public import Bus
public import NIOCore

/// A message the bus delivered to this agent: the DELIVER frame's fields (`from`, `kind`,
/// `subject`, `payload`, `deadline`, `attempt`, …) and a way to acknowledge it.
///
/// Acknowledge it with ``ack()`` once handled (iterating ``ACBClient/deliveries`` does this for the
/// previous element when asking for the next, and ``ACBClient/close()`` for every delivery the
/// iteration handed out); an unacknowledged delivery is delivered again.
@dynamicMemberLookup
public struct Delivery: Sendable {
    /// The frame as the bus sent it, its payload opened if it was sealed.
    public let frame: Deliver
    /// Who sealed it, nil for a plaintext payload.
    public let sealedBy: SealedBy?
    let connection: ClientConnection
    /// A sealed request's box nonce, which its reply is bound to.
    let requestNonce: [UInt8]?

    init(_ frame: Deliver, connection: ClientConnection, sealedBy: SealedBy? = nil, requestNonce: [UInt8]? = nil) {
        self.frame = frame
        self.connection = connection
        self.sealedBy = sealedBy
        self.requestNonce = requestNonce
    }

    public subscript<Value>(dynamicMember field: KeyPath<Deliver, Value>) -> Value {
        frame[keyPath: field]
    }

    /// The payload as UTF-8 text.
    public var text: String { String(buffer: frame.payload) }

    /// Tells the bus this delivery is handled.
    public func ack() { connection.done(frame.deliveryID) }

    func handedOut() { connection.handedOut(frame.deliveryID) }

    /// Asks the bus to deliver it again later (it is dead-lettered after the last attempt).
    public func nack() { connection.nack(frame.deliveryID) }
}

/// The sequence of deliveries of one client. Asking for the next element acknowledges the previous
/// one; ``ACBClient/close()`` acknowledges the last one handed out. What the sequence still holds
/// when the client closes (or the process dies) is delivered again.
public struct Deliveries<Element: Acknowledgeable>: AsyncSequence, Sendable {
    let base: AsyncStream<Element>

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<Element>.AsyncIterator
        var previous: Element?

        public mutating func next() async -> Element? {
            previous?.ack()
            previous = await base.next()
            (previous as? any HandedOut)?.handedOut()
            return previous
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), previous: nil)
    }
}

/// Something delivered that must be acknowledged.
public protocol Acknowledgeable: Sendable {
    func ack()
}

/// Something ``Deliveries`` hands to the application, which ``ACBClient/close()`` then acknowledges.
protocol HandedOut {
    /// Called as the sequence hands it out.
    func handedOut()
}

extension Delivery: Acknowledgeable, HandedOut {}

/// The answer to a request: the responder, its status and its payload.
public struct RequestResult: Sendable {
    public var from: String
    public var status: ReplyStatus
    public var payload: ByteBuffer

    public var text: String { String(buffer: payload) }
}

/// The deadline of the request being handled, inherited by requests made while handling it.
public enum RequestContext {
    /// Absolute deadline in Unix milliseconds, nil outside a request handler.
    @TaskLocal public static var deadline: UInt64?
}
