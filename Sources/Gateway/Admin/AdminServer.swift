import Actors
import Bus
import CoreMetrics
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Persistence
import Prometheus
public import ServiceLifecycle
import Synchronization

/// The admin REST API (docs/admin-api.md) on its own port: a Hummingbird application run as a
/// service beside the agent listener, stopped gracefully with it.
public final class AdminServer: Service {
    private let application: Application<RouterResponder<AdminContext>>
    private let api: AdminAPI
    private let bound = BoundPort()

    /// Builds the routes; the port is bound when the service runs.
    init(
        configuration: AdminConfiguration, api: AdminAPI, registry: PrometheusCollectorRegistry,
        connections: @escaping @Sendable () -> Int, logger: Logger
    ) throws {
        self.api = api
        let routes = AdminRoutes()
        // Before the routes: Hummingbird applies middleware to the routes added after it.
        routes.router.add(
            middleware: AdminMiddleware(
                configuration: configuration,
                buckets: AddressBuckets(perSecond: configuration.requestsPerSecond, burst: configuration.requestBurst),
                routes: routes.table, metrics: PrometheusMetricsFactory(registry: registry)))
        let sampler = MetricsSampler(
            registry: registry, supervisor: api.supervisor, sidecars: api.sidecars, children: api.children,
            connections: connections)
        api.addOperationsRoutes(to: routes, registry: registry, sampler: sampler)
        api.addDocumentRoutes(to: routes, document: try APIDocument())
        api.addAuthRoutes(to: routes)
        api.addAgentRoutes(to: routes)
        api.addKeyRoutes(to: routes)
        api.addMessageRoutes(to: routes)
        api.addDeadLetterRoutes(to: routes)
        api.addStreamRoutes(to: routes)
        api.addTenantRoutes(to: routes)
        api.addClusterRoutes(to: routes)
        api.addContextRoutes(to: routes)
        application = Application(
            router: routes.router,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: "acb"),
            onServerRunning: { [bound] channel in bound.resolve(.success(channel.localAddress?.port ?? 0)) },
            logger: logger)
    }

    /// The port it listens on, once it does.
    public func port() async throws -> Int {
        try await bound.wait()
    }

    /// Serves until graceful shutdown: then it stops accepting and finishes the requests in flight.
    public func run() async throws {
        do {
            try await application.run()
        } catch {
            bound.resolve(.failure(error))
            await api.calls.shutdown()
            throw error
        }
        bound.resolve(.failure(BusError(.shuttingDown, "the admin API stopped")))
        await api.calls.shutdown()
    }
}

/// The port the server bound, for those who wait for it: set once, when it is known or will
/// never be.
private final class BoundPort: Sendable {
    private let state = Mutex<(port: Result<Int, any Error>?, waiters: [CheckedContinuation<Int, any Error>])>(
        (nil, []))

    func resolve(_ port: Result<Int, any Error>) {
        let waiters = state.withLock { state in
            guard state.port == nil else { return [CheckedContinuation<Int, any Error>]() }
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: port) }
    }

    func wait() async throws -> Int {
        try await withCheckedThrowingContinuation { waiter in
            let port = state.withLock { state in
                if state.port == nil { state.waiters.append(waiter) }
                return state.port
            }
            if let port { waiter.resume(with: port) }
        }
    }
}

/// The router being built, and the table of its paths and methods (for 405 answers).
final class AdminRoutes {
    let router = Router(context: AdminContext.self)
    let table = RouteTable()

    /// Adds the route `method path`.
    func on(
        _ method: HTTPRequest.Method, _ path: String,
        _ handler: @escaping @Sendable (Request, AdminContext) async throws -> Response
    ) {
        router.on(RouterPath(path), method: method, use: handler)
        table.add(method, path)
    }
}
