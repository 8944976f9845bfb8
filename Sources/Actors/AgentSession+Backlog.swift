import Bus
import Logging
import NIOCore

/// Reading the stored backlog back, in order with what is sent meanwhile (docs/protocol.md 5.1a,
/// "Order holds").
///
/// A session reads its agent's stored messages a page at a time, each page once the last one is
/// settled, and its mailbox's ``BacklogGate`` decides meanwhile where a SEND by agent id goes:
/// stored behind the backlog while it is read (`reading`), kept back in the mailbox while the last
/// stores land (`closing`), delivered at once when it is read through (`open`).
///
/// Why no such send overtakes a message stored behind the backlog — one whose SEND found the gate
/// closed and was stored holding it (or was stored while its sender had such a store in flight):
///
/// 1. The sender routes and holds the gate under the mailbox's lock, and the gate opens under it:
///    no send can see it closed, then hold it after it opened. The lock is the one taken anyway to
///    offer the message, so the hot path pays nothing more.
/// 2. A hold ends only on this session's event loop, in ``backlogHoldEnded()``, which asks for a
///    read right after; a held store's hold ends after its completion, that is after it committed
///    (or was refused). The gate opens only in ``receiveBacklog(_:resuming:limit:)``, for a read
///    that is complete (`more` false) with no hold left. `more` is cleared when a read is asked for,
///    and set by every ``fetchBacklog()`` while one is under way or a page is held. So the read that
///    opens the gate was asked for after every hold ended, i.e. after every held store committed,
///    and the store answers a read with every message whose enqueue completed before it was asked
///    (``MessageStore/backlog(of:resuming:limit:done:)``). Each such message is in that page, now at
///    the mailbox's front, or was in an earlier page, delivered and settled before the read was
///    asked for (a read waits for `held` 0).
/// 3. Sends that find the gate closing are parked and join the message lane's end when it opens,
///    behind that page; sends that find it open come after it in the lane too. The drain of the
///    mailbox runs on this loop, never between the page's requeue and the gate opening.
/// 4. A message stored without a hold on this session (its agent was offline when it was sent; or
///    it held a session this one replaced) holds this gate when it commits, before its sender hears
///    `queued` (``Supervisor/enqueueStored(_:holding:done:)``): what anyone sends after that is
///    ordered by 2 and 3. What its own sender sent before that is stored behind it
///    (``StoresInFlight``), the store keeps the order of a sender's writes, and pages come oldest
///    first. Sends of other agents in that window ran concurrently with it and have no order to keep.
///
/// If the store cannot be read, the gate opens (``Mailbox/yieldBacklog()``) and order yields to
/// delivery; it closes again at the next stored message.
extension AgentSession {
    /// Where the session stands in its agent's stored backlog (``MessageStore``).
    struct Backlog {
        /// Stored messages handed to this session and not yet acknowledged or dead-lettered.
        var held = 0
        /// More may be waiting: a full page came back, or a message was stored meanwhile (a hold on
        /// the gate ended).
        var more = false
        var fetching = false
        /// The last fetch failed (the store is unreachable): the housekeeping tick tries again.
        var retry = false
        /// The first fetch, which also takes back what earlier sessions held, is done.
        var resumed = false
    }

    /// Asks the store for the next page of the backlog, unless a page is still held or on its way
    /// (then it is fetched once that page is settled). Pages are a mailbox's worth.
    func fetchBacklog() {
        guard let store = supervisor.store, state == .active else { return }
        guard !backlog.fetching, backlog.held == 0 else {
            backlog.more = true
            return
        }
        backlog.fetching = true
        backlog.more = false
        backlog.retry = false
        let resuming = !backlog.resumed
        let limit = configuration.mailboxCapacity
        store.backlog(of: identity.key, resuming: resuming, limit: limit) { result in
            self.channel.eventLoop.execute {
                self.assumeIsolated { $0.receiveBacklog(result, resuming: resuming, limit: limit) }
            }
        }
    }

    /// A message was stored for this agent, from any thread (and at the start: the backlog may hold
    /// messages): it holds the gate, and the session reads it before delivering anything at once.
    nonisolated func backlogArrived() {
        mailbox.holdBacklog()
        backlogHoldEnded()
    }

    /// A hold on the backlog gate ends, from any thread: the store it was taken for landed (or was
    /// refused, or the message arrived). The session asks for a read behind it, in the same task.
    nonisolated func backlogHoldEnded() {
        channel.eventLoop.execute {
            self.assumeIsolated { session in
                session.mailbox.releaseBacklogHold()
                if session.state == .active {
                    session.fetchBacklog()
                } else if session.mailbox.yieldBacklog() {
                    // A draining session reads no more backlog: nothing would open the gate, and
                    // what it parked could never go out. Order yields to delivery, as at shutdown.
                    session.scheduleDrain()
                }
            }
        }
    }

    private func receiveBacklog(_ result: Result<[StoredMessage], BusError>, resuming: Bool, limit: Int) {
        backlog.fetching = false
        // A closed session leaves what it fetched in the store, handed out: the next one resumes it.
        guard state == .active else { return }
        switch result {
        case .success(let page):
            backlog.resumed = backlog.resumed || resuming
            backlog.more = backlog.more || page.count == limit
            // Handed out as often as allowed already (by buses that died before it was settled):
            // dead-lettered, not delivered once more.
            let maxAttempts = configuration.maxDeliveryAttempts
            for spent in page where spent.attempts >= maxAttempts {
                supervisor.deadLetter(.message(Message(spent)), to: identity.key, reason: .unavailable)
            }
            let messages = page.filter { $0.attempts < maxAttempts }
            backlog.held += messages.count
            let complete = !backlog.more  // before a read asked for below clears `more`
            if messages.isEmpty {
                if !complete { fetchBacklog() }
            } else {
                requeue(messages.map { .message(Message($0)) })
            }
            // The last page is in the mailbox: what was kept back goes behind it.
            if mailbox.backlogRead(complete: complete) { scheduleDrain() }
        case .failure(let error):
            backlog.retry = true
            // Unreachable storage must not hold up live traffic: order yields to delivery.
            if mailbox.yieldBacklog() { scheduleDrain() }
            supervisor.logger.warning(
                "cannot read the stored backlog", metadata: ["agent": "\(identity.key)", "error": "\(error)"])
        }
    }

    /// A stored message left the session for good (acknowledged, or dead-lettered through the
    /// supervisor); fetches the next page once the held one is done.
    func backlogReleased() {
        backlog.held -= 1
        if backlog.held == 0, backlog.more { fetchBacklog() }
    }
}
