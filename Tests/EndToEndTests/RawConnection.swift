import ACBTLS
import Bus
import NIOCore
import NIOPosix

/// A plain TCP connection that sends whatever bytes a test wants and reads frames back,
/// for handshake and malformed-input tests that the client library would never produce.
struct RawConnection {
    private let channel: any Channel
    private var inbound: AsyncStream<ByteBuffer>.AsyncIterator
    private var buffer = ByteBuffer()

    /// - Parameter tls: a client context to speak TLS with (the server must be `localhost`).
    static func connect(port: Int, tls: TLSContext? = nil) async throws -> RawConnection {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)  // small writes leave one by one
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            TLSHandler(context: tls, serverName: "localhost"))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteCollector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return RawConnection(channel: channel, inbound: stream.makeAsyncIterator())
    }

    func send(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    func send(_ frame: Frame) async throws {
        var bytes = ByteBuffer()
        frame.encode(into: &bytes)
        try await send(bytes)
    }

    /// The next frame from the server, or nil once it closed the connection.
    mutating func read() async throws -> Frame? {
        while true {
            if let frame = try Frame.decode(from: &buffer, maxFrameBytes: UInt32.max >> 1) { return frame }
            guard var more = await inbound.next() else { return nil }
            buffer.writeBuffer(&more)
        }
    }

    /// Stops reading from the socket, as a stuck agent would: what the server sends piles up.
    func stopReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    /// Closes the connection abruptly, without GOAWAY, as a crash or a cut cable would.
    func close() async {
        try? await channel.close()
    }

    /// Sends HELLO with `token` and returns the answer (protocol 1 unless `version` says otherwise).
    mutating func hello(_ token: String, version: UInt16 = 1) async throws -> Frame? {
        try await send(.hello(Hello(version: version, token: token, clientName: "raw")))
        return try await read()
    }
}

extension RawConnection {
    /// Reads from the socket again after ``stopReading()``.
    func resumeReading() async throws {
        try await channel.setOption(.autoRead, value: true).get()
    }
}
