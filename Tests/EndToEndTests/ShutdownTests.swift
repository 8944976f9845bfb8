import ACBClient
import Actors
import Bus
import Gateway
import NIOCore
import Testing

@Suite(.timeLimit(.minutes(1))) struct ShutdownTests {
    @Test func shutdownSendsGoAwayAndClosesEverySession() async throws {
        var raw: RawConnection?
        try await TestBus.with { bus in
            raw = try await bus.raw()
            _ = try await raw!.hello(try await bus.token("alice"))
        }
        var frames: [Frame] = []
        while let frame = try await raw!.read() { frames.append(frame) }
        #expect(frames == [.goAway(GoAway(code: .shuttingDown, message: "the server is shutting down"))])
    }
}
