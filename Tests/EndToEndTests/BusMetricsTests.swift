import Actors
import Bus
import MetricsTestKit
import Testing

/// The bus's counters land on the series they name.
@Suite struct BusMetricsTests {
    /// Every error code counts on its own series, whatever the numbering of the codes.
    @Test(arguments: ErrorCode.allCases)
    func aRejectedFrameCountsUnderItsCode(code: ErrorCode) throws {
        let recorded = TestMetrics()
        let metrics = BusMetrics(factory: recorded)
        metrics.rejected(code)
        metrics.rejected(code)
        #expect(try recorded.expectCounter("acb_rejected_frames_total", [("code", code.name)]).totalValue == 2)
        #expect(recorded.counterTotal(label: "acb_rejected_frames_total") == 2)
    }
}
