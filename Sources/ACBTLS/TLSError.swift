import Bus
import CTLS

/// A TLS failure: a configuration OpenSSL refused, or a handshake or record it could not accept.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    /// What was being done, then OpenSSL's own reasons, oldest first.
    public let description: String

    init(_ what: String) {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            reasons.append(String(nulTerminated: text))
        }
        description = reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))"
    }
}
