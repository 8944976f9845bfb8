import ACBTLS
import NIOCore
import NIOEmbedded
import Testing

/// The TLS handler between two in-memory channels: bytes are shuttled until both sides are idle.
@Suite struct TLSHandlerTests {
    private let server = TLSConfiguration(
        certificateChain: DevCertificates.path("server.pem"), privateKey: DevCertificates.path("server.key"))

    private func client(foreign: Bool = false, certificate: Bool = false) -> TLSConfiguration {
        TLSConfiguration(
            certificateChain: certificate ? DevCertificates.path("agent-1.pem", foreign: foreign) : nil,
            privateKey: certificate ? DevCertificates.path("agent-1.key", foreign: foreign) : nil,
            trustRoots: DevCertificates.path("ca.pem", foreign: foreign))
    }

    @Test func handshakeThenDataBothWays() throws {
        let pair = try Pair(server: .server(server), client: .client(client()))
        // Written before the handshake: held until it completes (writeOutbound would wait for it).
        let written = pair.client.writeAndFlush(ByteBuffer(string: "hello before the handshake"))
        try pair.connect()
        try written.wait()
        #expect(try pair.server.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "hello before the handshake"))
        #expect(pair.clientEvents.versions == ["TLSv1.3"])
        // Two writes, one flush: one record, read as one buffer.
        pair.server.write(ByteBuffer(string: "a"), promise: nil)
        pair.server.write(ByteBuffer(string: "b"), promise: nil)
        pair.server.flush()
        try pair.shuttle()
        #expect(try pair.client.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "ab"))
        #expect(pair.serverHandler.peerCertificate == nil)
        try pair.close()
    }

    @Test func unflushedWritesArePassedOnOnceTheyAddUp() throws {
        let counter = WriteCounter()
        let pair = try Pair(server: .server(server), client: .client(client()), serverBelowTLS: counter)
        try pair.connect()
        let before = counter.bytes
        // Small writes wait for the flush; past TLSHandler.encryptAtBytes they go on without one,
        // so the channel's writability (backpressure) counts them.
        pair.server.write(ByteBuffer(repeating: 1, count: 1024), promise: nil)
        #expect(counter.bytes == before)
        for _ in 0..<2 {
            pair.server.write(ByteBuffer(repeating: 1, count: TLSHandler.encryptAtBytes / 2), promise: nil)
        }
        #expect(counter.bytes > before + TLSHandler.encryptAtBytes)
        try pair.close()
    }

    @Test func mutualTLSNamesTheClient() throws {
        var required = server
        required.trustRoots = DevCertificates.path("ca.pem")
        required.clientAuthentication = .required
        let pair = try Pair(server: .server(required), client: .client(client(certificate: true)))
        try pair.connect()
        #expect(pair.serverHandler.peerCertificate?.commonName == "agent-1")
        try pair.close()
    }

    @Test func clientCertificateFromAForeignCAIsRefused() throws {
        var required = server
        required.trustRoots = DevCertificates.path("ca.pem")
        required.clientAuthentication = .required
        var foreign = client(certificate: true)
        foreign.certificateChain = DevCertificates.path("agent-1.pem", foreign: true)
        foreign.privateKey = DevCertificates.path("agent-1.key", foreign: true)
        let pair = try Pair(server: .server(required), client: .client(foreign))
        try pair.connect()
        #expect(pair.serverEvents.errors.contains { $0.contains("certificate") })
        #expect(!pair.server.isActive)
    }

    @Test func serverCertificateFromAnUnknownCAIsRefused() throws {
        let pair = try Pair(server: .server(server), client: .client(client(foreign: true)))
        try pair.connect()
        #expect(pair.clientEvents.errors.contains { $0.contains("unable to get local issuer certificate") })
        #expect(!pair.client.isActive)
    }

    @Test func serverNameMustMatch() throws {
        let pair = try Pair(server: .server(server), client: .client(client()), serverName: "other.example")
        try pair.connect()
        #expect(pair.clientEvents.errors.contains { $0.contains("hostname mismatch") })
    }

    @Test func garbageFailsTheHandshakeAndCloses() throws {
        let channel = EmbeddedChannel()
        let events = Events()
        try channel.pipeline.syncOperations.addHandlers([TLSHandler(context: .server(server)), events])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        #expect(events.errors.count == 1)
        #expect(!channel.isActive)
    }

    @Test func missingKeyIsAClearError() {
        #expect(throws: TLSError.self) {
            try TLSContext.server(TLSConfiguration(certificateChain: DevCertificates.path("server.pem")))
        }
        #expect {
            try TLSContext.server(
                TLSConfiguration(
                    certificateChain: DevCertificates.path("server.pem"),
                    privateKey: DevCertificates.path("agent-1.key")))
        } throws: { "\($0)".contains("mismatch") }
    }
}

/// Records what reaches the end of a pipeline besides data.
private final class Events: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    var versions: [String] = []
    var errors: [String] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted { versions.append(completed.version) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append("\(error)")
    }
}

/// Counts the bytes written below it, flushed or not.
private final class WriteCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var bytes = 0

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        bytes += unwrapOutboundIn(data).readableBytes
        context.write(data, promise: promise)
    }
}

/// A client and a server channel joined in memory.
private struct Pair {
    let server = EmbeddedChannel()
    let client = EmbeddedChannel()
    let serverHandler: TLSHandler
    let serverEvents = Events()
    let clientEvents = Events()

    init(
        server serverContext: TLSContext, client clientContext: TLSContext, serverName: String = "localhost",
        serverBelowTLS: (any ChannelHandler)? = nil
    ) throws {
        serverHandler = try TLSHandler(context: serverContext)
        if let serverBelowTLS { try server.pipeline.syncOperations.addHandler(serverBelowTLS) }
        try server.pipeline.syncOperations.addHandlers([serverHandler, serverEvents])
        try client.pipeline.syncOperations.addHandlers([
            TLSHandler(context: clientContext, serverName: serverName), clientEvents,
        ])
    }

    func connect() throws {
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
        try server.connect(to: address).wait()
        try client.connect(to: address).wait()
        try shuttle()
    }

    /// Moves bytes each way until neither side has anything to send.
    func shuttle() throws {
        var moved = true
        while moved {
            moved = false
            while server.isActive, let bytes = try client.readOutbound(as: ByteBuffer.self) {
                try server.writeInbound(bytes)
                moved = true
            }
            while client.isActive, let bytes = try server.readOutbound(as: ByteBuffer.self) {
                try client.writeInbound(bytes)
                moved = true
            }
        }
    }

    func close() throws {
        try client.close().wait()
        try shuttle()
        _ = try? server.finish()
    }
}
