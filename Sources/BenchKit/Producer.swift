import NIOCore

/// What a producer did: every message it sent, and how the server answered.
public struct SendCounts: Codable, Sendable, Equatable {
    public var sent: UInt64 = 0
    /// Sends the server confirmed (ACB answers each; NATS answers none).
    public var accepted: UInt64 = 0
    /// Receivers the confirmed sends reached, by the server's count.
    public var recipients: UInt64 = 0
    /// Refusals by the server's code; a refused message is not expected at its receivers.
    public var refused: [String: UInt64] = [:]

    public var refusedTotal: UInt64 { refused.values.reduce(0, +) }

    /// Sends that got neither an OK nor a refusal.
    public var unanswered: UInt64 { sent.minus(accepted + refusedTotal) }
}

extension UInt64 {
    /// `self - other`, or zero when `other` is larger: counts never wrap around.
    func minus(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}

/// Sends stamped messages as fast as its credit allows.
///
/// At most `window` messages are outstanding for the slowest of its `fanout` receivers: both
/// servers get the same, bounded, pipelined load, and no receiver falls further behind than the
/// window. A receiver is past a message once it received a later one (so a message the server
/// skipped for it does not hold the window), or once as many arrived as were not refused.
final class Producer: Behaviour {
    /// What each message is.
    enum Action: Sendable {
        case send(to: String)
        case publish(topic: String)
        case broadcast
    }

    private let action: Action
    private let window: Int64
    private let limit: UInt64
    private var stamp: Stamp
    private(set) var counts = SendCounts()
    /// Per receiver: one past the highest sequence number it received.
    private var frontier: [Int64]
    /// Per receiver: how many messages it received.
    private var received: [Int64]
    private weak var outbox: (any Outbox)?
    private var running = false

    init(action: Action, window: Int, fanout: Int, limit: UInt64, payloadBytes: Int) {
        self.action = action
        self.window = Int64(window)
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

    /// Receiver `receiver` (0..<fanout) reports its progress.
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
        case .refused(let code):
            counts.refused[code, default: 0] += 1
            pump()
        default: break
        }
    }

    private func pump() {
        guard running, let outbox else { return }
        var wrote = false
        let refused = Int64(counts.refusedTotal)
        // With no receiver online (fan-out 0), the bus's answers are the credit.
        var slowest = frontier.isEmpty ? Int64(counts.accepted) + refused : Int64.max
        for (frontier, received) in zip(frontier, received) {
            slowest = min(slowest, max(frontier, received + refused))
        }
        while counts.sent < limit && Int64(counts.sent) - slowest < window {
            let payload = stamp.payload(sequence: counts.sent, nanos: Stamp.now())
            switch action {
            case .send(let agent): outbox.send(to: agent, payload)
            case .publish(let topic): outbox.publish(topic: topic, payload)
            case .broadcast: outbox.broadcast(payload)
            }
            counts.sent += 1
            wrote = true
        }
        if wrote { outbox.flush() }
    }
}
