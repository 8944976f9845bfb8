import ACBClient
import NIOCore

/// What a producer did: every message it sent, and how the server answered.
public struct SendCounts: Codable, Sendable, Equatable {
    public var sent: UInt64 = 0
    /// Sends the server said succeeded (ACB: each OK, and every send a CONFIRM settles; NATS says nothing).
    public var accepted: UInt64 = 0
    /// Receivers the accepted sends reached: an OK's count, or all of a confirmed send's receivers.
    public var recipients: UInt64 = 0
    /// Refusals by the server's code; a refused message is not expected at its receivers.
    public var refused: [String: UInt64] = [:]

    public var refusedTotal: UInt64 { refused.values.reduce(0, +) }

    /// Sends that got neither an acceptance nor a refusal.
    public var unanswered: UInt64 { sent.minus(accepted + refusedTotal) }
}

extension UInt64 {
    /// `self - other`, or zero when `other` is larger: counts never wrap around.
    func minus(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}

/// Sends stamped messages in its ``LoadShape``.
///
/// Open: batches of about 32 KiB, each flushed, for as long as the channel is writable and (ACB)
/// the bus's credit lasts; it goes on when the channel is writable again, when CREDIT arrives, and
/// after ``passBatches`` batches once its event loop has polled its sockets (``NextTurn``).
///
/// Window: at most `window` messages outstanding for the slowest of its `fanout` receivers (and
/// within the bus's credit): both servers get the same, bounded, pipelined load, and no receiver
/// falls further behind than the window. A receiver is past a message once it received a later one
/// (so a message the server skipped for it does not hold the window), or once as many arrived as
/// were not refused. With a sealer, each payload goes out as a box.
final class Producer: Behaviour {
    /// What each message is.
    enum Action: Sendable {
        /// `durable`: stored by the bus before it answers (ACB with PostgreSQL).
        case send(to: String, durable: Bool = false)
        case publish(topic: String)
        case broadcast
    }

    /// Batches one open-shape pass writes before it lets the event loop poll.
    static let passBatches = 16

    private let action: Action
    private let shape: LoadShape
    private let window: Int64
    /// Receivers of each message: what a CONFIRM says each confirmed message reached.
    private let fanout: UInt64
    /// Open shape: messages per flush.
    private let batch: Int
    private let limit: UInt64
    private var stamp: Stamp
    private let sealer: BoxSealer?
    private(set) var counts = SendCounts()
    /// Window shape, per receiver: one past the highest sequence number it received.
    private var frontier: [Int64]
    /// Window shape, per receiver: how many messages it received.
    private var received: [Int64]
    private weak var outbox: (any Outbox)?
    private var running = false
    /// In ``pump()``: a write calling back (writability) must not start a second pump inside it.
    private var pumping = false
    /// Open shape: a pass is waiting for its ``NextTurn``.
    private var awaitingTurn = false

    init(
        action: Action, shape: LoadShape, window: Int, fanout: Int, limit: UInt64, payloadBytes: Int,
        sealer: BoxSealer? = nil
    ) {
        self.sealer = sealer
        self.action = action
        self.shape = shape
        self.window = Int64(window)
        self.fanout = UInt64(fanout)
        self.batch = max(1, (32 << 10) / (payloadBytes + 64))
        self.frontier = Array(repeating: 0, count: fanout)
        self.received = Array(repeating: 0, count: fanout)
        self.limit = limit
        self.stamp = Stamp(payloadBytes: payloadBytes)
    }

    func attached(_ outbox: any Outbox) { self.outbox = outbox }

    func start() {
        running = true
        pump()
    }

    /// Stops sending; returns what was sent.
    func stop() -> SendCounts {
        running = false
        return counts
    }

    /// Window shape: receiver `receiver` (0..<fanout) reports its progress.
    func progress(from receiver: Int, frontier: UInt64, received count: UInt64) {
        self.frontier[receiver] = Int64(frontier)
        received[receiver] = Int64(count)
        pump()
    }

    func received(_ event: WireEvent, outbox: any Outbox) {
        switch event {
        case .accepted(let recipients):
            counts.accepted += 1
            counts.recipients += UInt64(recipients)
            if frontier.isEmpty { pump() }
        case .confirmed(let count):
            counts.accepted += UInt64(count)
            counts.recipients += UInt64(count) * fanout
            if frontier.isEmpty { pump() }
        case .refused(let code):
            counts.refused[code, default: 0] += 1
            pump()
        case .credited: pump()
        default: break
        }
    }

    func writable(_ outbox: any Outbox) { pump() }

    private func pump() {
        guard running, !pumping, let outbox else { return }
        pumping = true
        defer { pumping = false }
        switch shape {
        case .open: sendOpen(outbox)
        case .window: fillWindow(outbox)
        }
    }

    /// One open-shape pass: see the type's description.
    private func sendOpen(_ outbox: any Outbox) {
        for _ in 0..<Self.passBatches {
            guard outbox.isWritable else { return }
            var written = 0
            while written < batch && counts.sent < limit && outbox.sendCredit > 0 {
                sendOne(outbox)
                written += 1
            }
            if written > 0 { outbox.flush() }
            // Done, or out of credit until the next CREDIT.
            guard written == batch else { return }
        }
        guard !awaitingTurn else { return }
        awaitingTurn = true
        NextTurn.run(on: outbox.eventLoop) { [weak self] in
            self?.awaitingTurn = false
            self?.pump()
        }
    }

    private func fillWindow(_ outbox: any Outbox) {
        var wrote = false
        let refused = Int64(counts.refusedTotal)
        // With no receiver online (fan-out 0), the bus's answers are the credit.
        var slowest = frontier.isEmpty ? Int64(counts.accepted) + refused : Int64.max
        for (frontier, received) in zip(frontier, received) {
            slowest = min(slowest, max(frontier, received + refused))
        }
        while counts.sent < limit && Int64(counts.sent) - slowest < window && outbox.sendCredit > 0 {
            sendOne(outbox)
            wrote = true
        }
        if wrote { outbox.flush() }
    }

    private func sendOne(_ outbox: any Outbox) {
        var payload = stamp.payload(sequence: counts.sent, nanos: Stamp.now())
        if let sealer { payload = ByteBuffer(bytes: sealer.seal(Array(payload.readableBytesView))) }
        switch action {
        case .send(let agent, let durable): outbox.send(to: agent, payload, durable: durable)
        case .publish(let topic): outbox.publish(topic: topic, payload)
        case .broadcast: outbox.broadcast(payload)
        }
        counts.sent += 1
    }
}
