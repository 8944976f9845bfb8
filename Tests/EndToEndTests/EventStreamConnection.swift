import Bus
import Foundation
import NIOCore
import NIOPosix

/// A GET of a Server-Sent Events stream over a plain TCP connection, read as it arrives (Linux's
/// URLSession hands a body over only once it ends): HTTP/1.1, the chunked body taken apart, the
/// events parsed as an EventSource parses them (WHATWG HTML, server-sent events).
struct EventStreamConnection {
    /// One dispatched event.
    struct Event {
        var id: String?
        var event: String
        var data: String

        /// `data` as a JSON object (empty if it is not one).
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:]
        }
    }

    /// The response's status and headers (names lowercased).
    let status: Int
    let headers: [String: String]
    /// The whole body of an answer that is no stream (an error's JSON).
    private(set) var body = Data()
    /// The last `id` the stream gave, with or without an event, as EventSource keeps it.
    private(set) var lastEventID: String?

    private let channel: any Channel
    private var inbound: AsyncStream<ByteBuffer>.AsyncIterator
    /// Bytes received and not yet taken apart.
    private var received: [UInt8] = []
    /// Body text not yet parsed into events.
    private var text: [UInt8] = []
    private var ended = false

    /// Sends `GET path` with the bearer `token` and `headers`, and reads the response's head (and
    /// its whole body, when it is not chunked).
    static func open(port: Int, path: String, token: String, headers: [String: String] = [:]) async throws
        -> EventStreamConnection
    {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteCollector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: Bearer \(token)\r\n"
        request += "Accept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        try await channel.writeAndFlush(ByteBuffer(string: request + "\r\n"))

        var inbound = stream.makeAsyncIterator()
        var received: [UInt8] = []
        let separator = Array("\r\n\r\n".utf8)
        while received.firstRange(of: separator) == nil {
            guard let more = await inbound.next() else {
                throw BusError(.unavailable, "the server closed the connection before the response's head")
            }
            received += more.readableBytesView
        }
        let end = received.firstRange(of: separator)!
        let lines = String(decoding: received[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let status = lines[0].split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var connection = EventStreamConnection(
            status: status, headers: fields, channel: channel, inbound: inbound,
            received: Array(received[end.upperBound...]))
        if fields["transfer-encoding"]?.lowercased() != "chunked" {
            let length = Int(fields["content-length"] ?? "") ?? 0
            while connection.received.count < length, let more = await connection.inbound.next() {
                connection.received += more.readableBytesView
            }
            connection.body = Data(connection.received.prefix(length))
            connection.ended = true
        }
        return connection
    }

    private init(
        status: Int, headers: [String: String], channel: any Channel,
        inbound: AsyncStream<ByteBuffer>.AsyncIterator, received: [UInt8]
    ) {
        self.status = status
        self.headers = headers
        self.channel = channel
        self.inbound = inbound
        self.received = received
    }

    /// The body as a JSON object, for an answer that is no stream.
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }

    /// The next event, waiting for it; nil once the stream ended. Comment lines and blocks
    /// without `data` dispatch nothing (an `id` among them is kept as ``lastEventID``).
    mutating func next() async throws -> Event? {
        while true {
            if let event = takeEvent() { return event }
            guard !ended else { return nil }
            if !takeChunks() {
                guard let more = await inbound.next() else {
                    ended = true
                    continue
                }
                received += more.readableBytesView
            }
        }
    }

    /// Closes the connection, as a client that leaves does.
    func close() async {
        try? await channel.close()
    }

    /// Moves the complete chunks received to `text`. - Returns: whether there was one (or the end).
    private mutating func takeChunks() -> Bool {
        var took = false
        let lineEnd = Array("\r\n".utf8)
        while let sizeLine = received.firstRange(of: lineEnd) {
            let sizeText = String(decoding: received[..<sizeLine.lowerBound], as: UTF8.self)
            let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) ?? 0
            guard size > 0 else {
                ended = true
                return true
            }
            let start = sizeLine.upperBound
            guard received.count >= start + size + 2 else { break }
            text += received[start..<start + size]
            received.removeFirst(start + size + 2)
            took = true
        }
        return took
    }

    /// The first complete event in `text`, if any; blocks that dispatch nothing are consumed.
    private mutating func takeEvent() -> Event? {
        let blank = Array("\n\n".utf8)
        while let end = text.firstRange(of: blank) {
            let block = String(decoding: text[..<end.lowerBound], as: UTF8.self)
            text.removeFirst(end.upperBound)
            var event = "message"
            var data: [String] = []
            var id: String?
            for line in block.split(separator: "\n", omittingEmptySubsequences: false) where !line.hasPrefix(":") {
                // `field: value`, one space after the colon left out; a line without a colon is a field.
                let colon = line.firstIndex(of: ":")
                let field = colon.map { String(line[..<$0]) } ?? String(line)
                var value = colon.map { line[line.index(after: $0)...] } ?? ""
                if value.first == " " { value = value.dropFirst() }
                switch field {
                case "id": id = String(value)
                case "event": event = String(value)
                case "data": data.append(String(value))
                default: break
                }
            }
            if let id { lastEventID = id }
            guard !data.isEmpty else { continue }
            return Event(id: id ?? lastEventID, event: event, data: data.joined(separator: "\n"))
        }
        return nil
    }
}
