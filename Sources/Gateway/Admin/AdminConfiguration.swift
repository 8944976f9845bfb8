/// Settings of the admin REST API's listener.
public struct AdminConfiguration: Sendable {
    /// Address it binds to: loopback by default, so it is not exposed by accident.
    public var host = "127.0.0.1"
    /// Its port; 0 picks a free one.
    public var port = 7401
    /// Origins a browser may call it from (CORS): exact origins like `https://ops.example.com`, or
    /// `*` for any. Empty: no CORS headers, so browsers allow same-origin calls only.
    public var corsOrigins: [String] = []
    /// Requests one source address may make per second, and at once; more get 429 with Retry-After.
    public var requestsPerSecond = 200.0
    public var requestBurst: UInt32 = 400
    /// Largest request body accepted; a larger one gets 400 `too_large`.
    public var maxBodyBytes = 2 << 20

    public init() {}
}
