import Bus
import NIOConcurrencyHelpers

/// Every context watch of one client, across its connections: a value per watch, under one lock.
///
/// It routes CONTEXT_EVENT and the ERROR that ends a watch by (connection, ref), buffers events
/// for the consumer, remembers the last position each watch received, and hands out *claims*: a
/// watch to set up on a connection with CONTEXT_WATCH, which the client then sends. A watch is
/// claimed by one sender at a time; one whose connection went waits (`idle`) until the client
/// claims it on its next connection (``restore(on:)``), or until a sender whose connection failed
/// finds the client's current one.
///
/// Yields happen under the lock (they never call back); `finish` outside it, since it runs the
/// stream's termination handler, which may come back here. Lock order: this lock, then the
/// client's and a connection's (through `current`); nothing calls in here holding those.
final class ContextWatchHub: Sendable {
    /// Events that may wait for a watch's consumer: one more ends the watch with `overloaded`,
    /// rather than letting the buffer grow.
    static let bufferLimit = 1_024

    /// What a watch's stream carries: events, and where the bus ended the watch for falling
    /// behind (the consumer sets it up again on reaching it).
    enum Item: Sendable {
        case event(ContextWatchEvent)
        case resume
    }

    /// What CONTEXT_WATCH asks for: the watch as it was asked, or from its last position.
    struct Request: Sendable {
        var target: String
        var start: WatchStart
        var after: UInt64
        var paths: [String]

        func frame(_ ref: UInt64) -> Frame {
            .contextWatch(ContextWatch(ref: ref, target: target, start: start, after: after, paths: paths))
        }
    }

    /// A watch to set up on `connection` with `request`.
    struct Claim: Sendable {
        var connection: ClientConnection
        var request: Request
    }

    /// A watch the bus runs: CONTEXT_WATCH `ref` on `connection`.
    struct Subscription: Sendable {
        var connection: ClientConnection
        var ref: UInt64
    }

    private struct Route: Hashable {
        var connection: ObjectIdentifier
        var ref: UInt64

        init(_ connection: ClientConnection, _ ref: UInt64) {
            self.connection = ObjectIdentifier(connection)
            self.ref = ref
        }
    }

    private enum Phase {
        /// A sender is about to send CONTEXT_WATCH on this connection.
        case claimed(ClientConnection)
        /// CONTEXT_WATCH `ref` went out; no answer handled yet (events may already come).
        case subscribing(ClientConnection, UInt64)
        case live(ClientConnection, UInt64)
        /// Waiting for a connection.
        case idle
        /// Ended by the bus with `overloaded`; the consumer sets it up again.
        case paused

        var connection: ClientConnection? {
            switch self {
            case .claimed(let connection), .subscribing(let connection, _), .live(let connection, _): connection
            case .idle, .paused: nil
            }
        }

        var route: Route? {
            switch self {
            case .subscribing(let connection, let ref), .live(let connection, let ref): Route(connection, ref)
            case .claimed, .idle, .paused: nil
            }
        }
    }

    private struct Watch {
        let target: String
        let paths: [String]
        let start: ContextWatchStart
        /// Positions are revisions (a pattern) or versions (one id).
        let isPattern: Bool
        let continuation: AsyncThrowingStream<Item, any Error>.Continuation
        /// Where to resume: the last position handed to the stream, or where the bus said the
        /// watch stood once its first events (``replayLeft``) were handed over.
        var position: UInt64?
        /// Events of the start (a snapshot, a replay) still to come, and the position the bus named
        /// for after them. A watch cut before they all came starts as it was asked again.
        var replayLeft: UInt32 = 0
        var startedAt: UInt64 = 0
        var phase: Phase

        var request: Request {
            if let position { return Request(target: target, start: .after, after: position, paths: paths) }
            switch start {
            case .now: return Request(target: target, start: .now, after: 0, paths: paths)
            case .snapshot: return Request(target: target, start: .snapshot, after: 0, paths: paths)
            case .after(let after): return Request(target: target, start: .after, after: after, paths: paths)
            }
        }
    }

    private struct State {
        var nextID = 0
        var watches: [Int: Watch] = [:]
        var routes: [Route: Int] = [:]
        var closed = false

        mutating func remove(_ id: Int) -> Watch? {
            guard let watch = watches.removeValue(forKey: id) else { return nil }
            if let route = watch.phase.route { routes[route] = nil }
            return watch
        }

        /// Takes watch `id` off its connection: onto `current` if that one is up (the caller sends
        /// CONTEXT_WATCH there), else idle.
        mutating func release(_ id: Int, to current: ClientConnection?) -> Claim? {
            guard var watch = watches[id] else { return nil }
            if let route = watch.phase.route { routes[route] = nil }
            defer { watches[id] = watch }
            guard let current, current.isActive, current !== watch.phase.connection else {
                watch.phase = .idle
                return nil
            }
            watch.phase = .claimed(current)
            return Claim(connection: current, request: watch.request)
        }
    }

    private let state = NIOLockedValueBox(State())

    /// A new watch, claimed on `connection`; nil once the client is closed.
    func add(
        _ target: String, start: ContextWatchStart, paths: [String], on connection: ClientConnection,
        whenCancelled: @escaping @Sendable (Int) -> Void
    ) -> (id: Int, claim: Claim, stream: AsyncThrowingStream<Item, any Error>)? {
        // One slot more than the limit: room for the `resume` marker, and the overflow is seen.
        let (stream, continuation) = AsyncThrowingStream<Item, any Error>.makeStream(
            bufferingPolicy: .bufferingOldest(Self.bufferLimit + 1))
        let watch = Watch(
            target: target, paths: paths, start: start, isPattern: Topic.isPattern(target),
            continuation: continuation, phase: .claimed(connection))
        let id: Int? = state.withLockedValue { state in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.watches[state.nextID] = watch
            return state.nextID
        }
        guard let id else { return nil }
        continuation.onTermination = { termination in
            if case .cancelled = termination { whenCancelled(id) }
        }
        return (id, Claim(connection: connection, request: watch.request), stream)
    }

    /// CONTEXT_WATCH `ref` is going out on `connection` for watch `id`: its events go to it.
    func sent(_ id: Int, on connection: ClientConnection, ref: UInt64) {
        state.withLockedValue { state in
            guard case .claimed(let claimed)? = state.watches[id]?.phase, claimed === connection else { return }
            state.watches[id]?.phase = .subscribing(connection, ref)
            state.routes[Route(connection, ref)] = id
        }
    }

    /// CONTEXT_WATCHING, on the event loop before the events behind it: where the watch stands,
    /// once its first `replayed` events are in.
    func started(_ watching: ContextWatching, on connection: ClientConnection) {
        state.withLockedValue { state in
            guard let id = state.routes[Route(connection, watching.ref)], var watch = state.watches[id] else { return }
            watch.replayLeft = watching.replayed
            watch.startedAt = watching.position
            if watching.replayed == 0 { watch.position = max(watch.position ?? 0, watching.position) }
            state.watches[id] = watch
        }
    }

    /// The bus answered CONTEXT_WATCHING. - Returns: false if the watch is gone (the caller sends
    /// CONTEXT_UNWATCH).
    func answered(_ id: Int, on connection: ClientConnection, ref: UInt64) -> Bool {
        state.withLockedValue { state in
            guard let watch = state.watches[id] else { return false }
            // Anything else: the connection went meanwhile, or the bus already ended the watch.
            if case .subscribing(let sentOn, ref) = watch.phase, sentOn === connection {
                state.watches[id]?.phase = .live(connection, ref)
            }
            return true
        }
    }

    /// CONTEXT_WATCH failed on `connection`. If the connection went, the watch moves to the
    /// current one (returned: send it there) or waits; else the bus refused, and the watch ends
    /// with `error`.
    func failed(
        _ id: Int, on connection: ClientConnection, _ error: BusError, current: () -> ClientConnection?
    ) -> Claim? {
        let (claim, ended): (Claim?, Watch?) = state.withLockedValue { state in
            guard let watch = state.watches[id], watch.phase.connection === connection else { return (nil, nil) }
            guard connection.isActive else { return (state.release(id, to: current()), nil) }
            return (nil, state.remove(id))
        }
        ended?.continuation.finish(throwing: error)
        return claim
    }

    /// A CONTEXT_EVENT. - Returns: a watch the bus should stop (its consumer is gone, or fell too
    /// far behind and the watch ended).
    func received(_ event: ContextEvent, on connection: ClientConnection) -> Subscription? {
        let (overflowed, unwanted): (Watch?, Subscription?) = state.withLockedValue { state in
            guard let id = state.routes[Route(connection, event.watch)], var watch = state.watches[id] else {
                return (nil, nil)
            }
            let position = watch.isPattern ? event.head.revision : event.head.version
            // The bus sends nothing twice; this keeps the promise should it ever.
            if event.kind != .snapshot, let last = watch.position, position <= last { return (nil, nil) }
            // A snapshot's positions are in id order, not increasing: they say nothing of where to resume.
            if event.kind != .snapshot { watch.position = max(watch.position ?? 0, position) }
            if watch.replayLeft > 0 {
                watch.replayLeft -= 1
                if watch.replayLeft == 0 { watch.position = max(watch.position ?? 0, watch.startedAt) }
            }
            state.watches[id] = watch
            let running = Subscription(connection: connection, ref: event.watch)
            switch watch.continuation.yield(.event(ContextWatchEvent(event))) {
            case .enqueued(let remaining) where remaining > 0:
                return (nil, nil)
            case .enqueued, .dropped:
                return (state.remove(id), running)
            case .terminated:
                _ = state.remove(id)
                return (nil, running)
            @unknown default:
                return (nil, nil)
            }
        }
        overflowed?.continuation.finish(
            throwing: BusError(.overloaded, "the consumer fell more than \(Self.bufferLimit) events behind"))
        return unwanted
    }

    /// An ERROR with a watch's ref: the bus ended it. `overloaded` pauses it (the consumer sets it
    /// up again once it has taken what it holds).
    func ended(_ ref: UInt64, _ error: BusError, on connection: ClientConnection) {
        let ended: Watch? = state.withLockedValue { state in
            guard let id = state.routes.removeValue(forKey: Route(connection, ref)), var watch = state.watches[id]
            else { return nil }
            // Each resume takes at least one event, and only once the consumer took what it holds:
            // it always makes progress, at the consumer's pace.
            if error.code == .overloaded {
                watch.phase = .paused
                state.watches[id] = watch
                if case .enqueued = watch.continuation.yield(.resume) { return nil }
            }
            return state.remove(id)
        }
        ended?.continuation.finish(throwing: error)
    }

    /// The consumer reached the `resume` marker. - Returns: the claim to send, if a connection is up.
    func resume(_ id: Int, current: () -> ClientConnection?) -> Claim? {
        state.withLockedValue { state in
            guard case .paused? = state.watches[id]?.phase else { return nil }
            return state.release(id, to: current())
        }
    }

    /// `connection` closed: its watches wait for the next one, or all end with `error` when there
    /// will be none.
    func connectionLost(_ connection: ClientConnection, ending error: BusError?) {
        let ended: [Watch] = state.withLockedValue { state in
            guard error == nil else {
                defer {
                    state.watches.removeAll()
                    state.routes.removeAll()
                }
                return Array(state.watches.values)
            }
            for (id, watch) in state.watches where watch.phase.connection === connection {
                _ = state.release(id, to: nil)
            }
            return []
        }
        for watch in ended { watch.continuation.finish(throwing: error) }
    }

    /// Claims every waiting watch on `connection`, just established.
    func restore(on connection: ClientConnection) -> [(id: Int, claim: Claim)] {
        state.withLockedValue { state in
            var claims: [(id: Int, claim: Claim)] = []
            for (id, watch) in state.watches {
                guard case .idle = watch.phase else { continue }
                state.watches[id]?.phase = .claimed(connection)
                claims.append((id, Claim(connection: connection, request: watch.request)))
            }
            return claims
        }
    }

    /// Removes watch `id`; its sequence ends after what it holds.
    /// - Returns: where the bus runs it, to stop it there (a watch still being set up is stopped
    ///   by its sender, when the OK comes).
    func cancel(_ id: Int) -> Subscription? {
        guard let watch = state.withLockedValue({ $0.remove(id) }) else { return nil }
        watch.continuation.finish()
        guard case .live(let connection, let ref) = watch.phase else { return nil }
        return Subscription(connection: connection, ref: ref)
    }

    /// The client closed: every sequence ends after what it holds, and no watch starts again.
    func close() {
        let all: [Watch] = state.withLockedValue { state in
            state.closed = true
            defer {
                state.watches.removeAll()
                state.routes.removeAll()
            }
            return Array(state.watches.values)
        }
        for watch in all { watch.continuation.finish() }
    }
}
