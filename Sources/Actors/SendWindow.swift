import Bus
import Synchronization

/// The send window of one protocol 2 session (docs/protocol.md, section 5.2): receivers on any
/// thread count back the session's messages they have taken, and once a quarter of the window has
/// come back the session grants it again with CREDIT.
///
/// Receivers count with one atomic add per run of messages from the same sender, and wake the
/// sender once per quarter window, not once per message.
final class SendWindow: Sendable {
    /// The window, as CREDIT announces it after WELCOME.
    let size: UInt32
    /// Messages taken by receivers (or settled otherwise) and not yet granted back.
    private let returned = Atomic<Int>(0)
    /// Grants wait until this many have come back.
    private let batch: Int
    /// The sender, until it closes (``close()``), so that messages still queued at receivers do not
    /// keep a closed session alive. Not a weak reference: an object with one pays a slower reference
    /// count on every retain, and a session is retained several times per message.
    private let session: Mutex<AgentSession?>

    init(size: UInt32, session: AgentSession) {
        self.size = size
        self.batch = max(1, Int(size) / 4)
        self.session = Mutex(session)
    }

    /// `count` of the sender's messages left the bus's queues (taken, settled or dropped).
    func give(_ count: Int) {
        let before = returned.wrappingAdd(count, ordering: .relaxed).oldValue
        if before < batch, before + count >= batch { session.withLock { $0 }?.grantCreditSoon() }
    }

    /// The sender closed: nothing is granted any more.
    func close() {
        session.withLock { $0 = nil }
    }

    /// Takes what came back, for a CREDIT.
    func take() -> UInt32 {
        UInt32(clamping: returned.exchange(0, ordering: .relaxed))
    }
}

/// One PUBLISH or BROADCAST's share of its sender's window: it comes back when the last receiver
/// that accepted a copy has taken it.
final class FanoutCredit: Sendable {
    let window: SendWindow
    private let copies: Atomic<Int>

    /// - Parameter receivers: receivers offered a copy; one more is held until ``offered(refused:)``.
    init(window: SendWindow, receivers: Int) {
        self.window = window
        self.copies = Atomic(receivers + 1)
    }

    /// One copy left a receiver's queue.
    func taken() {
        if copies.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 { window.give(1) }
    }

    /// Every receiver was offered its copy; `refused` of them did not take it.
    func offered(refused: Int) {
        let left = copies.wrappingSubtract(refused + 1, ordering: .acquiringAndReleasing).newValue
        if left == 0 { window.give(1) }
    }
}

/// Whose send window a queued message counts against (protocol 2 senders only).
enum CreditOwner: Sendable {
    /// A SEND: one message of this window.
    case message(SendWindow)
    /// A copy of a PUBLISH or BROADCAST.
    case copy(FanoutCredit)
    /// A SEND from a session on another node.
    case remote(RemoteSender)
}

/// Gives credit back for messages a session takes out of its mailbox, one atomic add (or, for a
/// sender on another node, one record) per run of messages from the same sender.
struct CreditReturns {
    private var window: SendWindow?
    private var remote: RemoteSender?
    private var count = 0

    mutating func add(_ owner: CreditOwner?) {
        switch owner {
        case nil: return
        case .copy(let share): share.taken()
        case .message(let sender):
            if sender !== window {
                flush()
                window = sender
            }
            count += 1
        case .remote(let sender):
            if sender !== remote {
                flush()
                remote = sender
            }
            count += 1
        }
    }

    mutating func flush() {
        if count > 0 {
            window?.give(count)
            remote?.give(count)
        }
        (window, remote, count) = (nil, nil, 0)
    }
}
