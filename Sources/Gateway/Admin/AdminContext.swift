public import Hummingbird
import NIOCore

/// What the admin API knows about one request besides the request itself: who sent it (address,
/// and caller once its token is checked) and the id it is answered and logged under.
public struct AdminContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The peer's IP address, for per-address rate limits and the audit stream.
    public let remoteAddress: String
    /// The `X-Request-ID` of the response: the client's, if it sent a usable one, else a new one.
    public var requestID = ""
    /// The largest body a handler reads; set from ``AdminConfiguration/maxBodyBytes``.
    public var maxUploadSize: Int

    public init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        maxUploadSize = AdminConfiguration().maxBodyBytes
    }
}
