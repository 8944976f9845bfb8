import Bus
import CHiredis
import Foundation

/// A reply from Redis, decoded from hiredis's reply tree.
enum RedisReply: Equatable {
    case string([UInt8])
    case integer(Int64)
    case array([RedisReply])
    case nil_
    case status(String)
    case error(String)

    var text: String? {
        if case .string(let bytes) = self { String(decoding: bytes, as: UTF8.self) } else { nil }
    }
}

/// One hiredis connection (RESP2). Blocking and not thread-safe: it belongs to the one thread that uses it.
final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>

    /// Connects to `url` (`redis://host:port`), waiting at most `timeoutMs` for connect and each reply.
    init(url: String, timeoutMs: Int = 2_000) throws(SidecarError) {
        guard let components = URLComponents(string: url), components.scheme == "redis", let host = components.host
        else { throw SidecarError(message: "Redis URL must be redis://host:port, got \(url)", connectionLost: false) }
        let timeout = timeval(tv_sec: timeoutMs / 1000, tv_usec: Int((timeoutMs % 1000) * 1000))
        guard let context = redisConnectWithTimeout(host, Int32(components.port ?? 6379), timeout) else {
            throw SidecarError(message: "hiredis could not allocate a connection", connectionLost: true)
        }
        guard context.pointee.err == 0 else {
            let message = Self.error(context)
            redisFree(context)
            throw SidecarError(message: "cannot connect to Redis at \(url): \(message)", connectionLost: true)
        }
        redisSetTimeout(context, timeout)
        self.context = context
    }

    deinit { redisFree(context) }

    /// Sends `commands` in one pipeline and returns their replies, in order.
    /// - Throws: when the connection fails (it is then unusable); Redis errors come back as ``RedisReply/error(_:)``.
    func pipeline(_ commands: [[String]]) throws(SidecarError) -> [RedisReply] {
        for command in commands {
            // Each argument's exact UTF-8 bytes with their length: an embedded NUL is data, not an end.
            let arguments = command.map { argument in
                let bytes = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(argument.utf8.count, 1))
                _ = bytes.initialize(from: argument.utf8.lazy.map { CChar(bitPattern: $0) })
                return bytes
            }
            defer { arguments.forEach { $0.deallocate() } }
            var pointers = arguments.map { $0.baseAddress.map { UnsafePointer($0) } }
            let lengths = command.map { $0.utf8.count }
            guard redisAppendCommandArgv(context, Int32(command.count), &pointers, lengths) == REDIS_OK else {
                throw SidecarError(message: "Redis: \(Self.error(context))", connectionLost: true)
            }
        }
        var replies: [RedisReply] = []
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
                throw SidecarError(message: "Redis: \(Self.error(context))", connectionLost: true)
            }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            replies.append(Self.decode(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    /// Runs one command.
    func command(_ arguments: String...) throws(SidecarError) -> RedisReply {
        try pipeline([arguments])[0]
    }

    private static func decode(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        let bytes = { () -> [UInt8] in
            guard let string = value.str else { return [] }
            return string.withMemoryRebound(to: UInt8.self, capacity: value.len) {
                Array(UnsafeBufferPointer(start: $0, count: value.len))
            }
        }
        switch value.type {
        case REDIS_REPLY_STRING: return .string(bytes())
        case REDIS_REPLY_INTEGER: return .integer(value.integer)
        case REDIS_REPLY_ARRAY:
            return .array((0..<value.elements).compactMap { value.element[$0].map(decode) })
        case REDIS_REPLY_STATUS: return .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: bytes(), as: UTF8.self))
        default: return .nil_
        }
    }

    private static func error(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { String(nulTerminated: $0) }
    }
}
