import NIOCore
import NIOPosix

/// Runs work on the current event loop once the loop has polled its sockets again.
///
/// NIO runs every ready task before it polls, so an open-shape producer whose socket takes every
/// pass would, by queueing its next pass as a task, keep the loop from ever reading: its own CREDIT,
/// and every other connection of the loop. The producers of one loop wait here instead and run
/// together, in one task that starts ``pause`` after the previous round ended: the loop polls in
/// between (and sooner than that if a socket is ready).
enum NextTurn {
    /// Per event-loop thread: the work of the next round, nil while no round is scheduled.
    private static let rounds = ThreadSpecificVariable<NIOLoopBoundBox<[() -> Void]?>>()
    /// From the end of one round to the start of the next, unless a socket is ready sooner.
    static let pause = TimeAmount.microseconds(20)

    /// Runs `body` on `eventLoop`, the loop of the calling thread, in its next round.
    static func run(on eventLoop: any EventLoop, _ body: @escaping () -> Void) {
        let round =
            rounds.currentValue
            ?? {
                let round = NIOLoopBoundBox<[() -> Void]?>(nil, eventLoop: eventLoop)
                rounds.currentValue = round
                return round
            }()
        if round.value == nil {
            round.value = [body]
            schedule(round, on: eventLoop)
        } else {
            round.value?.append(body)
        }
    }

    /// Runs the round after ``pause``; what its work queues meanwhile waits for the round after.
    private static func schedule(_ round: NIOLoopBoundBox<[() -> Void]?>, on eventLoop: any EventLoop) {
        eventLoop.scheduleTask(in: pause) {
            let due = round.value ?? []
            round.value = []
            for body in due { body() }
            if round.value?.isEmpty ?? true {
                round.value = nil
            } else {
                schedule(round, on: eventLoop)
            }
        }
    }
}
