import Bus
import CoreMetrics
import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Wraps every admin request: gives it a request id, applies the per-address rate limit and CORS,
/// turns every failure into the one JSON error shape, and times it.
///
/// Hummingbird's CORSMiddleware is not used: its headers are missing on error responses, and it
/// takes one origin, not a list.
struct AdminMiddleware: RouterMiddleware {
    typealias Context = AdminContext

    let configuration: AdminConfiguration
    let buckets: AddressBuckets
    let routes: RouteTable
    let metrics: any MetricsFactory

    func handle(_ request: Request, context: AdminContext, next: (Request, AdminContext) async throws -> Response)
        async throws -> Response
    {
        let started = DispatchTime.now()
        var context = context
        context.requestID = Self.requestID(of: request)
        context.maxUploadSize = configuration.maxBodyBytes
        var response: Response
        if let preflight = preflight(request) {
            response = preflight
        } else {
            do {
                if let retryAfterMs = buckets.take(for: context.remoteAddress) {
                    throw AdminError(
                        .rateLimited,
                        "more than \(configuration.requestsPerSecond) requests a second from this address",
                        retryAfterMs: retryAfterMs)
                }
                response = try await next(request, context)
            } catch {
                response = adminError(error, request, context).response(requestID: context.requestID)
            }
        }
        response.headers[.requestID] = context.requestID
        if let origin = allowedOrigin(request) {
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.accessControlExposeHeaders] = "X-Request-ID, Retry-After, ETag"
            response.headers[.vary] = "Origin"
        }
        Timer(
            label: "acb_admin_request_duration_seconds",
            dimensions: [
                ("method", Self.knownMethods.contains(request.method) ? request.method.rawValue : "other"),
                ("route", context.endpointPath ?? "unmatched"),
                ("status", "\(response.status.code)"),
            ], factory: metrics
        ).recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds))
        return response
    }

    /// Methods named in the metric's labels; any other is `other`, so made-up methods cannot
    /// create series without end.
    private static let knownMethods: Set<HTTPRequest.Method> = [.get, .head, .post, .put, .delete, .options, .patch]

    /// Any failure as an ``AdminError``: the router's "no route" becomes `not_found`, or
    /// `method_not_allowed` when the path takes other methods.
    private func adminError(_ error: any Error, _ request: Request, _ context: AdminContext) -> AdminError {
        switch error {
        case let error as AdminError:
            return error
        case let error as BusError:
            return AdminError(error)
        case let error as HTTPError where error.status == .notFound:
            let allowed = routes.methods(for: request.uri.path)
            guard !allowed.isEmpty else { return AdminError(.notFound, "no such path: \(request.uri.path)") }
            var refusal = AdminError(.methodNotAllowed, "\(request.uri.path) takes \(allowed.map(\.rawValue))")
            refusal.allowed = allowed
            return refusal
        case let error as HTTPError where error.status == .contentTooLarge:
            return AdminError(.tooLarge, "the body exceeds \(context.maxUploadSize) bytes", field: "body")
        case let error as HTTPError where error.status.code < 500:
            return AdminError(.invalidArgument, error.body ?? "\(error.status)")
        default:
            context.logger.error(
                "admin request failed", metadata: ["error": "\(error)", "request_id": "\(context.requestID)"])
            return AdminError(.internal, "the request failed on the server; its id is in the log")
        }
    }

    /// The client's `X-Request-ID` if it is 1–128 characters of letters, digits, `.`, `_` and `-`;
    /// else a new UUID.
    private static func requestID(of request: Request) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".utf8)
        if let id = request.headers[.requestID], (1...128).contains(id.utf8.count), id.utf8.allSatisfy(allowed.contains)
        {
            return id
        }
        return UUID().uuidString.lowercased()
    }

    /// The value of `Access-Control-Allow-Origin` for the request's `Origin`, nil if not allowed.
    private func allowedOrigin(_ request: Request) -> String? {
        guard let origin = request.headers[.origin] else { return nil }
        if configuration.corsOrigins.contains("*") { return "*" }
        return configuration.corsOrigins.contains(origin) ? origin : nil
    }

    /// The answer to a CORS preflight from an allowed origin; nil for any other request.
    private func preflight(_ request: Request) -> Response? {
        guard request.method == .options, request.headers[.accessControlRequestMethod] != nil,
            allowedOrigin(request) != nil
        else { return nil }
        return Response(
            status: .noContent,
            headers: [
                .accessControlAllowMethods: "GET, POST, PUT, PATCH, DELETE",
                .accessControlAllowHeaders: "Authorization, Content-Type, X-Request-ID, If-Match, Last-Event-ID",
                .accessControlMaxAge: "600",
            ])
    }
}

extension HTTPField.Name {
    /// The id a request is answered and logged under.
    static let requestID = HTTPField.Name("X-Request-ID")!
}
