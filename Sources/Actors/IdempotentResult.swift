import Bus
import Foundation
import NIOCore

/// What an idempotency key's first attempt produced.
enum IdempotentResult: Sendable, Equatable {
    case ok(Outcome, recipients: UInt32)
    case response(from: String, status: ReplyStatus, payload: ByteBuffer)

    /// Bytes kept in memory for this result.
    var cost: Int {
        if case .response(_, _, let payload) = self { payload.readableBytes } else { 0 }
    }

    /// The result as ``SharedState`` keeps it: `ok:<outcome>:<recipients>` or
    /// `response:<status>:<base64 payload>:<from>`.
    var encoded: String {
        switch self {
        case .ok(let outcome, let recipients): "ok:\(outcome.rawValue):\(recipients)"
        case .response(let from, let status, let payload):
            "response:\(status.rawValue):\(Data(payload.readableBytesView).base64EncodedString()):\(from)"
        }
    }

    init?(encoded: String) {
        let parts = encoded.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
        switch (parts.first, parts.count) {
        case ("ok", 3):
            guard let outcome = UInt8(parts[1]).flatMap(Outcome.init(rawValue:)), let recipients = UInt32(parts[2])
            else { return nil }
            self = .ok(outcome, recipients: recipients)
        case ("response", 4):
            guard let status = UInt8(parts[1]).flatMap(ReplyStatus.init(rawValue:)),
                let payload = Data(base64Encoded: String(parts[2]))
            else { return nil }
            self = .response(from: String(parts[3]), status: status, payload: ByteBuffer(bytes: payload))
        default:
            return nil
        }
    }
}
