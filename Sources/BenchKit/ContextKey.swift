/// One context of a scenario, named for both servers: an ACB context id, or a key of a NATS KV bucket.
struct ContextKey: Sendable, Hashable {
    /// The NATS KV bucket (stream `KV_<bucket>`); ACB keeps contexts per tenant and ignores it.
    let bucket: String
    /// The ACB context id, and the NATS key: dot-separated tokens such as `bench.w0`.
    let name: String

    /// The subject NATS stores the key's values under.
    var subject: String { "$KV.\(bucket).\(name)" }
}
