public import ACBTLS
import Synchronization

/// The agent port's TLS context, built from PEM files and rebuilt from them on ``reload()``
/// (SIGHUP): new connections use the newest context, established ones keep theirs.
public final class ServerCertificates: Sendable {
    public let configuration: TLSConfiguration
    private let current: Mutex<TLSContext>

    /// - Throws: ``TLSError`` when the files cannot be read or do not belong together.
    public init(_ configuration: TLSConfiguration) throws(TLSError) {
        self.configuration = configuration
        current = Mutex(try TLSContext.server(configuration))
    }

    /// Reads the files again; on failure the previous certificates stay in use.
    public func reload() throws(TLSError) {
        let context = try TLSContext.server(configuration)
        current.withLock { $0 = context }
    }

    /// A handler for one new connection.
    func handler() throws(TLSError) -> TLSHandler {
        try TLSHandler(context: current.withLock { $0 })
    }
}
