import NIOCore

/// A context operation of the harness, in the same words for ACB's contexts and a NATS KV bucket.
///
/// Each is answered by one event: a write by ``WireEvent/committed(version:)``, a read by
/// ``WireEvent/value(version:_:)``, a bucket command or a watch by ``WireEvent/synced`` (then
/// ``WireEvent/changed(version:_:)`` for every change the watch sees), or any of them by
/// ``WireEvent/refused(_:)`` (a failed compare-and-swap is `version_conflict` on both servers).
/// Versions are ACB's context versions and NATS's stream sequences (the key's revision).
enum ContextCommand: Sendable {
    /// Creates the KV bucket (NATS; ACB has nothing to create: send these to NATS only).
    case createBucket(String)
    /// Deletes the KV bucket and everything in it (NATS only, as ``createBucket(_:)``).
    case deleteBucket(String)
    /// Writes the first version: on ACB a JSON context every agent of the tenant reads and
    /// `writers` may write; on NATS a plain put.
    case create(ContextKey, ByteBuffer, writers: [String])
    /// Replaces the value: unconditionally, or only if the latest version is `expected`
    /// (compare-and-swap).
    case put(ContextKey, ByteBuffer, expected: UInt64? = nil)
    /// Reads the latest version.
    case get(ContextKey)
    /// Hears of every change after now, in order.
    case watch(ContextKey)
}
