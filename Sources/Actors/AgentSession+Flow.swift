import Bus
import NIOCore

/// Protocol 2's flow control (docs/protocol.md, sections 4.5b and 5.2): the send window granted with
/// CREDIT, successes answered by one cumulative CONFIRM instead of an OK each, and PING/PONG.
extension AgentSession {
    /// Opens the send window: its whole size as the first CREDIT, right behind WELCOME.
    func openWindow() {
        let window = SendWindow(size: configuration.sendWindow, session: self)
        sendWindow = window
        write(.credit(Credit(grant: window.size)))
    }

    /// Grants what receivers gave back, from any thread (``SendWindow`` wakes once per quarter window).
    nonisolated func grantCreditSoon() {
        channel.eventLoop.execute { self.assumeIsolated { $0.grantCredit() } }
    }

    private func grantCredit() {
        guard state != .closed, let sendWindow else { return }
        let grant = sendWindow.take()
        guard grant > 0 else { return }
        write(.credit(Credit(grant: grant)))
        flush()
    }

    /// `count` of this session's SENDs to agents on `node` left their queues there: its window gets
    /// them back, as from receivers on this node.
    func creditReturned(_ count: Int, from node: String) {
        guard let sendWindow else { return }
        remoteCredit.returned(count, from: node, nowMs: MonotonicClock.nowMs())
        sendWindow.give(count)
    }

    /// Gives the window back what nodes that are gone, or silent for long, hold of it: their
    /// `credit` records will not come.
    func reclaimRemoteCredit(nowMs: UInt64) {
        let live = Set(supervisor.cluster?.otherNodes ?? [])
        let reclaimed = remoteCredit.reclaim(live: live, nowMs: nowMs)
        if reclaimed > 0 { sendWindow?.give(reclaimed) }
    }

    /// A SEND, BROADCAST or PUBLISH succeeded: under protocol 1 its OK, under 2 a later CONFIRM.
    func succeeded(_ ref: UInt64, _ outcome: Outcome = .delivered, recipients: UInt32) {
        if sendWindow != nil {
            refs.succeeded(ref)
        } else {
            write(.ok(Ok(ref: ref, outcome: outcome, recipients: recipients)))
        }
    }

    /// Writes CONFIRM for what succeeded since the last one, short of any SEND still being stored
    /// (it gets its own answer, and nothing after it may be confirmed before that answer is out).
    func confirmSucceeded() {
        if let through = refs.confirm() { write(.confirm(RefOnly(ref: through))) }
    }

    /// PONG, behind the answers to every frame read before the PING.
    func pong(_ ping: RefOnly) {
        confirmSucceeded()
        write(.pong(ping))
    }
}

/// The refs protocol 2 confirms: SEND, BROADCAST and PUBLISH refs increase, so one number says
/// which of them succeeded.
struct ConfirmedRefs {
    private var last: UInt64 = 0
    private var lastSucceeded: UInt64 = 0
    private var confirmed: UInt64 = 0
    /// Refs of commands being stored (SENDs for an offline agent, durable ones), answered on their
    /// own once durable; in increasing order, as refs are taken, and mostly answered oldest first.
    private var beingStored = CircularBuffer<UInt64>(initialCapacity: 1)

    /// Takes the ref of a new SEND, BROADCAST or PUBLISH. - Returns: false if it does not increase.
    mutating func take(_ ref: UInt64) -> Bool {
        guard ref > last else { return false }
        last = ref
        return true
    }

    mutating func succeeded(_ ref: UInt64) { lastSucceeded = ref }

    /// A command is being stored: CONFIRM stops short of it until ``stored(_:)``.
    mutating func storing(_ ref: UInt64) { beingStored.append(ref) }

    /// The stored command was answered (OK `queued` or ERROR).
    mutating func stored(_ ref: UInt64) {
        if let index = beingStored.firstIndex(of: ref) { beingStored.remove(at: index) }
    }

    /// The ref a CONFIRM should now carry, if it moves.
    mutating func confirm() -> UInt64? {
        guard lastSucceeded > confirmed else { return nil }
        let through = beingStored.first.map { min(lastSucceeded, $0 - 1) } ?? lastSucceeded
        guard through > confirmed else { return nil }
        confirmed = through
        return through
    }
}
