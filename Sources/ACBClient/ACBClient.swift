public import Bus
import Foundation
import NIOConcurrencyHelpers
public import NIOCore

/// An agent's connection to ACB: async/await over one long-lived TCP connection.
///
/// Commands (`send`, `request`, …) return once the bus answered them and throw ``BusError`` with the
/// bus's code when refused. Deliveries arrive on ``deliveries`` and verified streams on ``streams``;
/// requests go to the handler given to ``serve(_:)`` if there is one. After an unexpected disconnect
/// the client reconnects with exponential backoff and registers, subscribes and watches contexts
/// again; commands made meanwhile fail with ``ErrorCode/unavailable``.
public final class ACBClient: Sendable {
    /// A request handler: gets the request, returns the reply payload; a thrown error becomes an
    /// error reply carrying its description.
    public typealias RequestHandler = @Sendable (Delivery) async throws -> ByteBuffer

    private struct Link {
        var connection: ClientConnection?
        var description: AgentDescription?
        var patterns: Set<String> = []
        var readiness = Readiness.ready
        var handler: RequestHandler?
        var reconnecting: Task<Void, Never>?
        var closed = false
        /// The refresh token of the last LOGIN or REFRESH, when the client logs in.
        var refreshToken: String?
        /// Which of the configuration's addresses the client connects to now.
        var address = 0
    }

    public let configuration: ClientConfiguration
    private let link = NIOLockedValueBox(Link())
    private let deliveryInbox: (stream: AsyncStream<Delivery>, continuation: AsyncStream<Delivery>.Continuation)
    private let streamInbox:
        (stream: AsyncStream<IncomingStream>, continuation: AsyncStream<IncomingStream>.Continuation)
    private let reconnects = AsyncStream<ClientConnection>.makeStream(bufferingPolicy: .bufferingNewest(1))
    /// Downloads broken by a lost connection, resumed when the bus delivers the same stream again.
    private let partials = PartialDownloads(capacity: 8)
    /// Context watches, set up again on each new connection.
    let contextWatches = ContextWatchHub()
    /// Own keys, pinned keys and group keys, for end-to-end encryption.
    let keyRing: KeyRing
    /// Deliveries waiting to be opened, in order, when the client has keys.
    private let sealedInbox: (stream: AsyncStream<Delivery>, continuation: AsyncStream<Delivery>.Continuation)
    /// Refusals for ``sealingFailures``: the newest ``maxSealingFailures`` are kept until read.
    let failureInbox = AsyncStream<SealingFailure>.makeStream(
        bufferingPolicy: .bufferingNewest(ACBClient.maxSealingFailures))

    private init(configuration: ClientConfiguration) throws {
        self.configuration = configuration
        self.deliveryInbox = AsyncStream.makeStream()
        self.streamInbox = AsyncStream.makeStream()
        self.sealedInbox = AsyncStream.makeStream()
        self.keyRing = try KeyRing(own: configuration.keys, pinFile: configuration.pinFile)
    }

    /// Connects and completes the handshake.
    /// - Throws: ``BusError`` (`unauthenticated`, `unsupported_version`, `forbidden` when other keys
    ///   than ``ClientConfiguration/keys`` are published for the agent, …) or a connection error.
    public static func connect(_ configuration: ClientConfiguration) async throws -> ACBClient {
        let client = try ACBClient(configuration: configuration)
        if configuration.keys != nil || configuration.requireSealed {
            // Unstructured: it runs as long as the client; close() ends its sequence.
            Task { [sealed = client.sealedInbox.stream] in await client.openDeliveries(sealed) }
        }
        // Each address once, in turn, before giving up.
        for attempt in 1...configuration.addresses.count {
            do {
                try await client.establish()
                break
            } catch {
                guard attempt < configuration.addresses.count, !(error is BusError) else {
                    await client.close()
                    throw error
                }
            }
        }
        return client
    }

    /// The configuration, aimed at the address the client connects to now; each failure to
    /// connect moves on to the next.
    private var current: ClientConfiguration {
        var current = configuration
        let addresses = configuration.addresses
        let address = addresses[link.withLockedValue { $0.address } % addresses.count]
        (current.host, current.port) = (address.host, address.port)
        return current
    }

    /// What the server said in WELCOME on the current connection.
    public var welcome: Welcome? { link.withLockedValue { $0.connection?.welcome } }

    /// Messages delivered to this agent (direct, broadcast, topic, and requests when no handler is set).
    public var deliveries: Deliveries<Delivery> { Deliveries(base: deliveryInbox.stream) }

    /// Streams delivered to this agent, verified and written to disk.
    public var streams: Deliveries<IncomingStream> { Deliveries(base: streamInbox.stream) }

    /// Publishes this agent's description to the registry (again after each reconnect).
    public func register(_ description: AgentDescription) async throws {
        _ = try await call { .register(Register(ref: $0, description: description)) }
        link.withLockedValue { $0.description = description }
    }

    public func unregister() async throws {
        _ = try await call { .unregister(RefOnly(ref: $0)) }
        link.withLockedValue { $0.description = nil }
    }

    /// One page of the tenant's registered agents; pass the returned cursor for the next page.
    public func discover(
        type: String = "", capability: String = "", status: AgentStatus = .any,
        cursor: String = "", limit: UInt16 = 0
    ) async throws -> Discovered {
        let frame = try await call {
            .discover(
                Discover(
                    ref: $0, agentType: type, capability: capability, status: status, cursor: cursor,
                    limit: limit))
        }
        guard case .discovered(let page) = frame else { throw Self.unexpected(frame) }
        return page
    }

    /// Announces readiness now and with every heartbeat: capability routing skips busy and draining agents.
    public func setReadiness(_ readiness: Readiness) {
        let connection = link.withLockedValue { link in
            link.readiness = readiness
            return link.connection
        }
        connection?.fire(.heartbeat(Heartbeat(readiness: readiness)))
    }

    /// Sends a payload to one agent, by id or capability. With `durable`, the bus answers once the
    /// message is committed to PostgreSQL, even when the receiver is online (outcome `queued`, see
    /// docs/protocol.md 5.1b). With `sealed`, it is encrypted end to end for the agent `target`
    /// names (docs/protocol.md 5.16). - Returns: the bus's OK.
    @discardableResult
    public func send(
        to target: Target, _ payload: ByteBuffer, idempotencyKey: String = "",
        deadline: UInt64? = nil, durable: Bool = false, sealed: Sealing? = nil
    ) async throws -> Ok {
        var payload = payload
        if let sealed { payload = try await seal(payload, to: target, sealed, purpose: .message).payload }
        return try await ok { [payload] in
            .send(
                Send(
                    ref: $0, target: target, idempotencyKey: idempotencyKey,
                    deadline: deadline ?? RequestContext.deadline, payload: payload,
                    flags: durable ? .durable : []))
        }
    }

    /// Sends to every other online agent of the tenant (`durable`: a stored copy each, as for
    /// ``send(to:_:idempotencyKey:deadline:durable:sealed:)``). - Returns: how many received (or stored) it.
    @discardableResult
    public func broadcast(_ payload: ByteBuffer, deadline: UInt64? = nil, durable: Bool = false) async throws
        -> UInt32
    {
        try await ok {
            .broadcast(Fanout(ref: $0, deadline: deadline, payload: payload, flags: durable ? .durable : []))
        }.recipients
    }

    /// Publishes on a topic (`durable`: a stored copy per subscriber). - Returns: how many
    /// subscribers received (or stored) it.
    @discardableResult
    public func publish(topic: String, _ payload: ByteBuffer, deadline: UInt64? = nil, durable: Bool = false)
        async throws -> UInt32
    {
        try await ok {
            .publish(
                Fanout(ref: $0, topic: topic, deadline: deadline, payload: payload, flags: durable ? .durable : []))
        }.recipients
    }

    /// Subscribes to a topic pattern (`*` one token, `>` the rest); matches arrive on ``deliveries``.
    public func subscribe(_ pattern: String) async throws {
        _ = try await call { .subscribe(PatternCommand(ref: $0, pattern: pattern)) }
        link.withLockedValue { _ = $0.patterns.insert(pattern) }
    }

    public func unsubscribe(_ pattern: String) async throws {
        _ = try await call { .unsubscribe(PatternCommand(ref: $0, pattern: pattern)) }
        link.withLockedValue { _ = $0.patterns.remove(pattern) }
    }

    /// Asks one agent and waits for its answer.
    ///
    /// The deadline is `timeoutMs` from now, or what is left of the request being handled
    /// (``RequestContext/deadline``) if that is sooner.
    /// With `sealed`, the request is sealed (a box) for the agent `target` names, and its reply
    /// must come sealed from that agent, bound to this request.
    /// - Throws: ``ErrorCode/timeout`` when no reply came in time, and the routing codes of `send`;
    ///   with `sealed`, ``SealError`` for a reply that does not open.
    public func request(
        _ target: Target, _ payload: ByteBuffer, timeoutMs: UInt64? = nil,
        idempotencyKey: String = "", sealed: Bool = false
    ) async throws -> RequestResult {
        var deadline = WallClockMs.now() + (timeoutMs ?? configuration.defaultRequestTimeoutMs)
        if let inherited = RequestContext.deadline { deadline = min(deadline, inherited) }
        let (sent, nonce) = sealed ? try await seal(payload, to: target, .box, purpose: .request) : (payload, [])
        let frame = try await call {
            .request(
                Send(
                    ref: $0, target: target, idempotencyKey: idempotencyKey, deadline: deadline,
                    payload: sent))
        }
        guard case .response(let response) = frame else { throw Self.unexpected(frame) }
        let answer = sealed ? try await openReply(response, from: target.name, nonce: nonce) : response.payload
        return RequestResult(from: response.from, status: response.status, payload: answer)
    }

    /// Answers requests with `handler`, one task per request (bounded by the bus's unacked window).
    /// Each request is acknowledged once its reply is sent.
    public func serve(_ handler: @escaping RequestHandler) {
        link.withLockedValue { $0.handler = handler }
    }

    /// Closes the connection for good (no reconnect), acknowledging first every delivery that
    /// ``deliveries`` handed to the application; those it did not hand out yet are delivered again
    /// to the agent's next session.
    public func close() async {
        let (connection, task) = link.withLockedValue { link in
            link.closed = true
            return (link.connection, link.reconnecting)
        }
        task?.cancel()
        contextWatches.close()
        try? await connection?.acknowledgeHandedOut().get()
        try? await connection?.channel.close()
        partials.discardAll()
        sealedInbox.continuation.finish()
        failureInbox.continuation.finish()
        deliveryInbox.continuation.finish()
        streamInbox.continuation.finish()
        reconnects.continuation.finish()
    }

    /// Revokes this agent's tokens (the access token of the session and, after a LOGIN, its whole
    /// refresh family), then closes for good.
    public func logout() async throws {
        _ = try await ok { .logout(RefOnly(ref: $0)) }
        await close()
    }

    /// Cuts the TCP connection without GOAWAY, as a network failure would (for tests and demos of
    /// reconnect and resume). Anything sent after this call is lost with the connection.
    public func dropConnection() {
        link.withLockedValue { $0.connection }?.channel.close(promise: nil)
    }

    // MARK: internals

    func call(_ build: (UInt64) -> Frame) async throws -> Frame {
        try await currentConnection().call(build)
    }

    private func ok(_ build: (UInt64) -> Frame) async throws -> Ok {
        let frame = try await call(build)
        guard case .ok(let ok) = frame else { throw Self.unexpected(frame) }
        return ok
    }

    func currentConnection() throws -> ClientConnection {
        guard let connection = link.withLockedValue({ $0.connection }), connection.isActive else {
            throw ClientConnection.closedError
        }
        return connection
    }

    /// Waits until the client has reconnected, for uploads that resume.
    func nextConnection() async throws -> ClientConnection {
        for await connection in reconnects.stream where connection.isActive { return connection }
        throw ClientConnection.closedError
    }

    static func unexpected(_ frame: Frame) -> BusError {
        BusError(.badFrame, "unexpected answer \(frame.type)")
    }

    /// Connects, then restores registration and subscriptions.
    private func establish() async throws {
        let connection: ClientConnection
        do {
            connection = try await ClientConnection.open(
                current, token: try await accessToken(), partials: partials, delegate: self
            ) { [weak self] in self?.link.withLockedValue { $0.readiness } ?? .ready }
        } catch {
            if !(error is BusError) { link.withLockedValue { $0.address += 1 } }
            throw error
        }
        let (closed, description, patterns, readiness) = link.withLockedValue { link in
            if !link.closed { link.connection = connection }
            return (link.closed, link.description, link.patterns, link.readiness)
        }
        guard !closed else {
            // close() ran while this connection was being made: it must not outlive the client.
            try? await connection.channel.close()
            throw ClientConnection.closedError
        }
        guard connection.isActive else {
            // It died between WELCOME and here; its close was ignored because it was not current yet.
            return connectionLost(connection, goAway: nil)
        }
        if readiness != .ready { connection.fire(.heartbeat(Heartbeat(readiness: readiness))) }
        try await publishKeys(on: connection)
        if let description { _ = try await connection.call { .register(Register(ref: $0, description: description)) } }
        for pattern in patterns {
            _ = try await connection.call { .subscribe(PatternCommand(ref: $0, pattern: pattern)) }
        }
        await restoreContextWatches(on: connection)
        reconnects.continuation.yield(connection)
    }

    /// The token for HELLO: the configured one, or with ``ClientConfiguration/credentials`` a fresh
    /// one from REFRESH (LOGIN the first time, or when the refresh token is stale or revoked).
    private func accessToken() async throws -> String {
        guard let credentials = configuration.credentials else { return configuration.token }
        var tokens: Tokens?
        if let refreshToken = link.withLockedValue({ $0.refreshToken }) {
            do {
                tokens = try await ClientConnection.exchange(
                    .refresh(Refresh(refreshToken: refreshToken)), current)
            } catch let error as BusError where error.code == .unauthenticated {
                tokens = nil  // log in again
            }
        }
        let fresh: Tokens
        if let tokens {
            fresh = tokens
        } else {
            fresh = try await ClientConnection.exchange(.login(credentials), current)
        }
        link.withLockedValue { $0.refreshToken = fresh.refreshToken }
        return fresh.accessToken
    }

    /// Connects again after a pause, doubled after each round that failed. In a round every address
    /// is tried once, one after the other: a node that refuses the connection (it died) hands over
    /// to the next at once; an answer of the bus (a refused token) ends the round.
    private func reconnect() async {
        var backoff = configuration.initialBackoffMs
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(backoff))
            for _ in configuration.addresses.indices {
                guard !Task.isCancelled else { return }
                do {
                    try await establish()
                    return
                } catch is BusError {
                    break
                } catch {
                    continue
                }
            }
            backoff = min(backoff * 2, configuration.maxBackoffMs)
        }
    }
}

extension ACBClient: ClientConnectionDelegate {
    func delivered(_ delivery: Delivery) {
        if configuration.keys == nil && !configuration.requireSealed {
            route(delivery)
        } else {
            sealedInbox.continuation.yield(delivery)
        }
    }

    /// Hands a delivery (opened, if it was sealed) to the request handler or to ``deliveries``.
    func route(_ delivery: Delivery) {
        guard delivery.kind == .request, let handler = link.withLockedValue({ $0.handler }) else {
            deliveryInbox.continuation.yield(delivery)
            return
        }
        // One unstructured task per request: the handler is the application's async code, and the
        // bus bounds how many requests can be in flight (its unacked window).
        Task {
            let reply: Bus.Reply
            do {
                let payload = try await RequestContext.$deadline.withValue(delivery.deadline) {
                    try await handler(delivery)
                }
                reply = Bus.Reply(
                    correlationID: delivery.correlationID, status: .ok, payload: try sealedReply(payload, to: delivery))
            } catch {
                // An error's text is as private as a reply: sealed too, and if that fails, only
                // that it failed.
                let text = ByteBuffer(string: "\(error)")
                reply = Bus.Reply(
                    correlationID: delivery.correlationID, status: .error,
                    payload: (try? sealedReply(text, to: delivery))
                        ?? ByteBuffer(string: "the reply could not be sealed"))
            }
            delivery.connection.fire(.reply(reply))
            delivery.ack()
        }
    }

    func streamArrived(_ stream: IncomingStream) {
        let sealed = Self.isSealedStream(stream.path)
        guard configuration.keys != nil, sealed else {
            guard configuration.requireSealed else {
                streamInbox.continuation.yield(stream)
                return
            }
            // Refused as a plaintext delivery is: deleted, NACKed and reported.
            try? FileManager.default.removeItem(atPath: stream.path)
            stream.connection.nack(stream.deliveryID)
            let error =
                sealed ? SealError(.invalidKeys, "no keys to open it") : SealError(.notSealed, "a plaintext stream")
            failureInbox.continuation.yield(
                SealingFailure(from: stream.from, deliveryID: stream.deliveryID, error: error))
            return
        }
        // Off the event loop: opening reads and writes the whole file.
        Task {
            do {
                streamInbox.continuation.yield(try await openStream(stream))
            } catch {
                try? FileManager.default.removeItem(atPath: stream.path)
                let failure = Self.sealingFailure(error)
                if failure.code != .keysUnavailable { stream.connection.nack(stream.deliveryID) }
                failureInbox.continuation.yield(
                    SealingFailure(from: stream.from, deliveryID: stream.deliveryID, error: failure))
            }
        }
    }

    /// Whether the file at `path` starts as a sealed stream does.
    private static func isSealedStream(_ path: String) -> Bool {
        guard let file = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? file.close() }
        return SealedFormat.kind(of: Array((try? file.read(upToCount: 4)) ?? Data())) == .stream
    }

    func connectionLost(_ connection: ClientConnection, goAway: GoAway?) {
        contextWatchesLost(connection, goAway: goAway)
        link.withLockedValue { link in
            guard link.connection === connection else { return }
            link.connection = nil
            guard configuration.reconnect, !link.closed, goAway?.code != .replaced else { return }
            // Unstructured: it outlives the connection that died; close() cancels it.
            link.reconnecting = Task { [weak self] in await self?.reconnect() }
        }
    }
}

/// Unix milliseconds, the clock of deadlines on the wire.
enum WallClockMs {
    static func now() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}
