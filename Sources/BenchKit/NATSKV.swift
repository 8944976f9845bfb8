import NIOCore

/// NATS's side of the context scenarios: a JetStream KV bucket, spoken over the core protocol the
/// way NATS's client libraries do it. Bucket `b` is stream `KV_b` over subjects `$KV.b.>`.
///
/// - Put: a publish to `$KV.b.<key>` with a reply inbox, answered by JetStream's PubAck
///   (`{"stream":"KV_b", "seq":N}`); compare-and-swap sends header
///   `Nats-Expected-Last-Subject-Sequence`, and a PubAck with `err_code` 10071 is the conflict.
/// - Get: a direct get, `$JS.API.DIRECT.GET.KV_b.$KV.b.<key>` with no payload, answered by the
///   value with its sequence in header `Nats-Sequence` (or status `404` with no value).
/// - Watch: an ephemeral push consumer (deliver new, ack none) filtered to the key; each delivery's
///   `$JS.ACK.…` reply subject carries its stream sequence.
///
/// Every answer comes to one of four inboxes of the connection, subscribed ahead of its first
/// command; the server handles a connection's commands in order, so the subscriptions are in place
/// before any answer. Used on the connection's event loop, inside ``NATSWire``.
struct NATSKV {
    /// Subscription ids of the inboxes, far above the ones ``NATSWire`` hands out for topics.
    private enum Sid: Int, CaseIterable {
        case ack = 1_000_001, get, api, watch
    }

    /// JetStream's error code for a failed expected-sequence check (`wrong last sequence`).
    static let wrongLastSequence: UInt64 = 10_071

    private let name: String
    private var subscribed = false

    init(name: String) { self.name = name }

    mutating func command(_ command: ContextCommand, into out: inout ByteBuffer) {
        if !subscribed {
            for sid in Sid.allCases { out.writeString("SUB \(inbox(sid)) \(sid.rawValue)\r\n") }
            subscribed = true
        }
        switch command {
        case .createBucket(let bucket):
            NATSWire.pub(
                "$JS.API.STREAM.CREATE.KV_\(bucket)", reply: inbox(.api), ByteBuffer(string: Self.stream(bucket)),
                into: &out)
        case .deleteBucket(let bucket):
            NATSWire.pub("$JS.API.STREAM.DELETE.KV_\(bucket)", reply: inbox(.api), ByteBuffer(), into: &out)
        case .create(let key, let body, _), .put(let key, let body, .none):
            NATSWire.pub(key.subject, reply: inbox(.ack), body, into: &out)
        case .put(let key, let body, let expected?):
            Self.hpub(
                key.subject, reply: inbox(.ack), header: "Nats-Expected-Last-Subject-Sequence: \(expected)", body,
                into: &out)
        case .get(let key):
            NATSWire.pub(
                "$JS.API.DIRECT.GET.KV_\(key.bucket).\(key.subject)", reply: inbox(.get), ByteBuffer(), into: &out)
        case .watch(let key):
            NATSWire.pub(
                "$JS.API.CONSUMER.CREATE.KV_\(key.bucket)", reply: inbox(.api),
                ByteBuffer(string: Self.consumer(key, deliverTo: inbox(.watch))), into: &out)
        }
    }

    /// Appends what a message to one of the KV inboxes means (nothing for one that means
    /// nothing to the harness); false, appending nothing, if `sid` is not one of them.
    func take(
        sid: Int, reply: String?, headers: ByteBuffer, payload: ByteBuffer, into events: inout [WireEvent]
    ) -> Bool {
        guard let sid = Sid(rawValue: sid) else { return false }
        switch sid {
        case .ack: events.append(Self.acknowledgement(payload))
        case .api:
            let code = FieldScan.unsigned(after: #""err_code":"#, in: payload)
            events.append(code.map { WireEvent.refused("jetstream_\($0)") } ?? .synced)
        case .get:
            if let status = FieldScan.unsigned(after: "NATS/1.0 ", in: headers) {
                events.append(.refused(status == 404 ? "not_found" : "nats_status_\(status)"))
            } else if let sequence = FieldScan.unsigned(after: "Nats-Sequence:", in: headers) {
                events.append(.value(version: sequence, payload))
            } else {
                events.append(.refused("direct_get_without_sequence"))
            }
        case .watch:
            // Anything without an ack subject (a status message) is not a change.
            if let reply, let sequence = Self.streamSequence(ackReply: reply) {
                events.append(.changed(version: sequence, payload))
            }
        }
        return true
    }

    private func inbox(_ sid: Sid) -> String { "_INBOX.\(name).kv\(sid.rawValue)" }

    /// A PubAck: `{"stream":"KV_b", "seq":42}`, or `{"error":{"code":400,"err_code":10071,…},…}`.
    private static func acknowledgement(_ payload: ByteBuffer) -> WireEvent {
        if let code = FieldScan.unsigned(after: #""err_code":"#, in: payload) {
            return .refused(code == wrongLastSequence ? "version_conflict" : "jetstream_\(code)")
        }
        guard let sequence = FieldScan.unsigned(after: #""seq":"#, in: payload) else { return .refused("bad_pub_ack") }
        return .committed(version: sequence)
    }

    /// The stream sequence in a delivery's ack subject:
    /// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or
    /// (nats-server 2.10+) the same with a domain and an account hash after `ACK`, and maybe a token at the end.
    private static func streamSequence(ackReply: String) -> UInt64? {
        let tokens = ackReply.split(separator: ".")
        guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        return UInt64(tokens[tokens.count == 9 ? 5 : 7])
    }

    /// What NATS's KV clients create for a bucket with file storage and 16 values of history per key.
    private static func stream(_ bucket: String) -> String {
        #"{"name":"KV_\#(bucket)","subjects":["$KV.\#(bucket).>"],"max_msgs_per_subject":16,"discard":"new","#
            + #""allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"storage":"file","num_replicas":1}"#
    }

    /// A KV watch of one key from now on: an ephemeral push consumer delivering to `inbox`.
    private static func consumer(_ key: ContextKey, deliverTo inbox: String) -> String {
        #"{"stream_name":"KV_\#(key.bucket)","config":{"deliver_subject":"\#(inbox)","deliver_policy":"new","#
            + #""ack_policy":"none","filter_subject":"\#(key.subject)","flow_control":false,"headers_only":false}}"#
    }

    /// `HPUB`: a publish with one header line.
    private static func hpub(
        _ subject: String, reply: String, header: String, _ payload: ByteBuffer, into out: inout ByteBuffer
    ) {
        let headers = "NATS/1.0\r\n\(header)\r\n\r\n"
        let headerBytes = headers.utf8.count
        out.writeString("HPUB \(subject) \(reply) \(headerBytes) \(headerBytes + payload.readableBytes)\r\n")
        out.writeString(headers)
        out.writeImmutableBuffer(payload)
        out.writeString("\r\n")
    }
}
