import Bus
import Logging
import NIOCore
import Synchronization

extension AgentSession {
    /// Where the session stands in its agent's stored backlog (``MessageStore``).
    struct Backlog {
        /// Stored messages handed to this session and not yet acknowledged or dead-lettered.
        var held = 0
        /// More may be waiting: a full page came back, or a message was stored meanwhile.
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

    /// Another session or the store says a message was stored for this agent while it was online.
    nonisolated func backlogArrived() {
        channel.eventLoop.execute { self.assumeIsolated { $0.fetchBacklog() } }
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
            // The last page is in the mailbox, ahead of anything sent from now on.
            if !backlog.more { readingBacklog.store(false, ordering: .relaxed) }
            if messages.isEmpty {
                if backlog.more { fetchBacklog() }
            } else {
                requeue(messages.map { .message(Message($0)) })
            }
        case .failure(let error):
            backlog.retry = true
            // Unreachable storage must not hold up live traffic: order yields to delivery.
            readingBacklog.store(false, ordering: .relaxed)
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
