public import Bus
public import NIOCore

/// A message the bus delivered to this agent.
///
/// Acknowledge it with ``ack()`` once handled (iterating ``ACBClient/deliveries`` does this for the
/// previous element when asking for the next); an unacknowledged delivery is delivered again.
public struct Delivery: Sendable {
    public var id: UInt64
    public var kind: DeliveryKind
    public var from: String
    /// The topic, for topic deliveries.
    public var subject: String
    public var correlationID: UInt64
    public var deadline: UInt64?
    /// 1 on first delivery; higher means this is a redelivery.
    public var attempt: UInt16
    public var payload: ByteBuffer
    let connection: ClientConnection

    init(_ deliver: Deliver, connection: ClientConnection) {
        self.id = deliver.deliveryID
        self.kind = deliver.kind
        self.from = deliver.from
        self.subject = deliver.subject
        self.correlationID = deliver.correlationID
        self.deadline = deliver.deadline
        self.attempt = deliver.attempt
        self.payload = deliver.payload
        self.connection = connection
    }

    /// The payload as UTF-8 text.
    public var text: String { String(buffer: payload) }

    /// Tells the bus this delivery is handled.
    public func ack() { connection.done(id) }

    /// Asks the bus to deliver it again later (it is dead-lettered after the last attempt).
    public func nack() { connection.nack(id) }
}

/// The sequence of deliveries of one client. Asking for the next element acknowledges the previous
/// one, so a consumer that stops mid-way leaves its last delivery to be delivered again.
public struct Deliveries<Element: Acknowledgeable>: AsyncSequence, Sendable {
    let base: AsyncStream<Element>

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<Element>.AsyncIterator
        var previous: Element?

        public mutating func next() async -> Element? {
            previous?.ack()
            previous = await base.next()
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

extension Delivery: Acknowledgeable {}

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
