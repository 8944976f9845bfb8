import Bus
import Foundation
import HTTPTypes
import Hummingbird

/// A failed admin request: one of the bus's stable error codes, a message, and the field at fault
/// when the input was bad. Sent as the one JSON error shape, with its HTTP status.
struct AdminError: Error {
    var code: ErrorCode
    var message: String
    /// The body field, query parameter or path parameter that was wrong (`limit`, `to`, `body`).
    var field: String?
    /// For 429 and 503: when to retry, also sent as `Retry-After` (seconds, rounded up).
    var retryAfterMs: UInt32 = 0
    /// For 405: the methods the path takes (`Allow`).
    var allowed: [HTTPRequest.Method] = []

    init(_ code: ErrorCode, _ message: String, field: String? = nil, retryAfterMs: UInt32 = 0) {
        self.code = code
        self.message = message
        self.field = field
        self.retryAfterMs = retryAfterMs
    }

    /// The bus's error, with the field it concerns.
    init(_ error: BusError, field: String? = nil) {
        self.init(error.code, error.message, field: field, retryAfterMs: error.retryAfterMs)
    }

    /// The HTTP status of each code.
    var status: HTTPResponse.Status {
        switch code {
        case .unauthenticated: .unauthorized
        case .forbidden: .forbidden
        case .unknownAgent, .unknownStream, .notFound, .unknownContext, .noKey: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .conflict, .offline, .versionConflict: .conflict
        case .contextExpired, .compacted: .gone
        case .patchFailed: .unprocessableContent
        case .rateLimited: .tooManyRequests
        case .overloaded, .storageUnavailable, .unavailable, .shuttingDown: .serviceUnavailable
        case .internal: .internalServerError
        default: .badRequest
        }
    }

    /// The JSON body every error has.
    struct Body: Encodable {
        var code: String
        var message: String
        var field: String?
        var requestID: String
        var timestamp: String
        var retryAfterMs: UInt32?
        /// With `version_conflict`: the context's current version (0: no live context).
        var currentVersion: UInt64?
        /// With `compacted`: the oldest position the bus can resume after (or version it keeps).
        var oldest: UInt64?
    }

    /// The response for the request `requestID`.
    func response(requestID: String) -> Response {
        // The numbers a client acts on lead the message, as on the wire (Bus/Context/ContextErrors.swift).
        let bus = BusError(code, message)
        let body = Body(
            code: code.name, message: message, field: field, requestID: requestID,
            timestamp: Date().formatted(.iso8601), retryAfterMs: retryAfterMs > 0 ? retryAfterMs : nil,
            currentVersion: bus.currentVersion, oldest: bus.oldestHeld)
        var response = AdminJSON.response(body, status: status)
        if retryAfterMs > 0 { response.headers[.retryAfter] = "\((retryAfterMs + 999) / 1000)" }
        if code == .unauthenticated { response.headers[.wwwAuthenticate] = "Bearer realm=\"acb\"" }
        if !allowed.isEmpty { response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ") }
        return response
    }
}
