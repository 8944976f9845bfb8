import Testing

@testable import Actors

/// What a session's SENDs to other nodes hold of its send window (docs/cluster.md, *Credit across
/// nodes*), and when it is taken back without those nodes' `credit` records.
@Suite struct RemoteCreditLedgerTests {
    @Test func whatANodeGaveBackIsNoLongerHeld() {
        var ledger = RemoteCreditLedger()
        for _ in 0..<3 { ledger.lend(to: "n1", nowMs: 0) }
        ledger.returned(3, from: "n1", nowMs: 5)
        #expect(ledger.isEmpty)
        #expect(ledger.reclaim(live: [], nowMs: 100_000) == 0)
    }

    @Test func aReturnThatOvertakesItsLendSettlesWithIt() {
        var ledger = RemoteCreditLedger()
        ledger.returned(1, from: "n1", nowMs: 0)
        #expect(ledger.reclaim(live: [], nowMs: 100_000) == 0, "nothing is held: no credit is made up")
        ledger.lend(to: "n1", nowMs: 1)
        #expect(ledger.isEmpty)
    }

    @Test func whatAGoneNodeHeldComesBackAtOnce() {
        var ledger = RemoteCreditLedger()
        for _ in 0..<4 { ledger.lend(to: "n1", nowMs: 0) }
        ledger.lend(to: "n2", nowMs: 0)
        #expect(ledger.reclaim(live: ["n1", "n2"], nowMs: 10) == 0)
        #expect(ledger.reclaim(live: ["n2"], nowMs: 10) == 4)
        #expect(ledger.reclaim(live: ["n2"], nowMs: 10) == 0, "taken back once")
    }

    @Test func whatASilentNodeHoldsComesBackAfterTheSilence() {
        let silence = RemoteCreditLedger.silenceMs
        var ledger = RemoteCreditLedger()
        ledger.lend(to: "n1", nowMs: 0)
        ledger.lend(to: "n1", nowMs: silence - 1)
        ledger.returned(1, from: "n1", nowMs: 1_000)
        // The node spoke at 1,000: its silence counts from then.
        #expect(ledger.reclaim(live: ["n1"], nowMs: silence + 999) == 0)
        #expect(ledger.reclaim(live: ["n1"], nowMs: silence + 1_000) == 1)
        #expect(ledger.isEmpty)
    }
}
