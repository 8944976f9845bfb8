import Foundation
import NIOConcurrencyHelpers
import Synchronization

/// The two shapes a persistence writer could have, side by side (docs/architecture.md, section 3):
/// the bus's (a thread of its own taking work from a queue behind a lock, woken by a condition) and
/// an actor whose executor is a thread of its own (a custom `SerialExecutor`), so the compiler
/// guards its state. Producer threads submit work as the event loops do, from code that is not
/// async; the writer commits what arrived while its last commit ran (group commit), each commit
/// blocking its thread for `commitMicros` as a PostgreSQL transaction would.
public enum WriterQueueBench {
    /// What one design did with the same work.
    public struct Result: Sendable, CustomStringConvertible {
        public var design: String
        public var items: Int
        public var seconds: Double
        /// This process's CPU time (producers and writer), in seconds.
        public var cpuSeconds: Double
        public var commits: Int

        public var description: String {
            String(
                format: "%@: %.0f items/s, %.2f µs of CPU per item, %d commits (%.0f items each)", design,
                Double(items) / seconds, cpuSeconds / Double(items) * 1e6, commits, Double(items) / Double(commits))
        }
    }

    /// Runs both designs on `items` submissions from `producers` threads.
    public static func run(items: Int, producers: Int, commitMicros: Int) -> [Result] {
        [
            measure("thread and lock", items: items, producers: producers) { done in
                LockedWriter(commitMicros: commitMicros, done: done)
            },
            measure("actor on a thread executor", items: items, producers: producers) { done in
                ActorWriter(commitMicros: commitMicros, done: done)
            },
        ]
    }

    private static func measure(
        _ design: String, items: Int, producers: Int, _ make: (@escaping @Sendable () -> Void) -> any Writer
    ) -> Result {
        let completed = Atomic<Int>(0)
        let finished = ConditionLock(value: 0)
        let writer = make {
            if completed.add(1, ordering: .relaxed).newValue == items {
                finished.lock()
                finished.unlock(withValue: 1)
            }
        }
        let cpuStart = cpuSeconds()
        let started = ContinuousClock.now
        DispatchQueue.concurrentPerform(iterations: producers) { producer in
            for _ in stride(from: producer, to: items, by: producers) { writer.submit(Item()) }
        }
        finished.lock(whenValue: 1)
        finished.unlock()
        let elapsed = ContinuousClock.now - started
        let result = Result(
            design: design, items: items,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            cpuSeconds: cpuSeconds() - cpuStart, commits: writer.commits)
        writer.stop()
        return result
    }

    private static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let seconds = { (time: timeval) in Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}

/// A unit of work: about what a stored message's write carries.
private struct Item: Sendable {
    var payload = [UInt8](repeating: 0x61, count: 256)
}

private protocol Writer: Sendable {
    /// Called from producer threads, never blocking them.
    func submit(_ item: Item)
    var commits: Int { get }
    func stop()
}

/// The bus's shape (``WorkerThread`` with a `NIOLockedValueBox` queue, as `PostgresStore`).
private final class LockedWriter: Writer {
    private struct State {
        var items: [Item] = []
        var commits = 0
        var stopped = false
    }

    private let state = NIOLockedValueBox(State())
    private let wakeup = ConditionLock(value: 0)

    init(commitMicros: Int, done: @escaping @Sendable () -> Void) {
        Thread.detachNewThread { [self] in
            while true {
                wakeup.lock(whenValue: 1)
                wakeup.unlock(withValue: 0)
                let (batch, stopped) = state.withLockedValue { state in
                    defer { state.items.removeAll(keepingCapacity: true) }
                    return (state.items, state.stopped)
                }
                if stopped { return }
                usleep(UInt32(commitMicros))
                state.withLockedValue { $0.commits += 1 }
                for _ in batch { done() }
            }
        }
    }

    func submit(_ item: Item) {
        state.withLockedValue { $0.items.append(item) }
        wakeup.lock()
        wakeup.unlock(withValue: 1)
    }

    var commits: Int { state.withLockedValue { $0.commits } }

    func stop() {
        state.withLockedValue { $0.stopped = true }
        wakeup.lock()
        wakeup.unlock(withValue: 1)
    }
}

/// A serial executor that runs its jobs on one thread of its own, in order.
private final class ThreadExecutor: SerialExecutor {
    private let jobs = NIOLockedValueBox<[UnownedJob]>([])
    private let ready = ConditionLock(value: 0)

    init() {
        Thread.detachNewThread { [self] in
            while true {
                ready.lock(whenValue: 1)
                ready.unlock(withValue: 0)
                let batch = jobs.withLockedValue { jobs in
                    defer { jobs.removeAll(keepingCapacity: true) }
                    return jobs
                }
                for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
            }
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLockedValue { $0.append(job) }
        ready.lock()
        ready.unlock(withValue: 1)
    }
}

/// The other shape: state guarded by the actor; a submission is a task on its executor, and a
/// commit task queued behind the submissions that arrived meanwhile makes the group.
private actor ActorWriter: Writer {
    private nonisolated let executor = ThreadExecutor()
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private let commitMicros: Int
    private let done: @Sendable () -> Void
    private var items: [Item] = []
    private var commitQueued = false
    private let committed = Atomic<Int>(0)

    init(commitMicros: Int, done: @escaping @Sendable () -> Void) {
        self.commitMicros = commitMicros
        self.done = done
    }

    nonisolated func submit(_ item: Item) {
        // From a thread that is not async, as an event loop's session code is: a task per call.
        Task { await self.take(item) }
    }

    private func take(_ item: Item) {
        items.append(item)
        guard !commitQueued else { return }
        commitQueued = true
        Task { self.commit() }
    }

    private func commit() {
        commitQueued = false
        let batch = items
        items.removeAll(keepingCapacity: true)
        usleep(UInt32(commitMicros))
        committed.add(1, ordering: .relaxed)
        for _ in batch { done() }
    }

    nonisolated var commits: Int { committed.load(ordering: .relaxed) }

    nonisolated func stop() {}
}
