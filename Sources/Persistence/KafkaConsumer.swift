import Bus
import CRdKafka
import Foundation

/// A librdkafka consumer of partition 0 of one topic, from the records produced after it started
/// (no consumer group: one reader per topic). Creates the topic, with one partition, if it does not
/// exist. Blocking and not thread-safe: it belongs to the one thread that polls it.
final class KafkaConsumer {
    private let handle: OpaquePointer
    private let topic: OpaquePointer
    private let callbacks: KafkaCallbacks

    /// - Parameters:
    ///   - brokers: `host:port[,host:port…]`.
    ///   - topic: the topic to read; created with one partition if missing.
    /// The largest record it reads (a cluster record with a 64 MiB context body, and room to spare).
    static let maxRecordBytes = 65 << 20
    /// How long the broker keeps the records of a topic it creates.
    static let retentionMs = 3_600_000

    init(brokers: String, topic name: String, log: RateLimitedLog) throws(SidecarError) {
        callbacks = KafkaCallbacks(log: log)
        let configuration = try callbacks.configuration([
            "bootstrap.servers": brokers,
            "enable.auto.commit": "false",
            // A fetch returns as soon as one record is there, or after 10 ms with none. Shorter waits
            // cost the broker a poll each, even when idle (BENCHMARKS.md, the cluster section).
            "fetch.min.bytes": "1",
            "fetch.wait.max.ms": "10",
            "fetch.error.backoff.ms": "10",
            "socket.nagle.disable": "true",
            "reconnect.backoff.ms": "100",
            "reconnect.backoff.max.ms": "2000",
            "fetch.max.bytes": "\(Self.maxRecordBytes)",
            "receive.message.max.bytes": "\(Self.maxRecordBytes + 1 << 20)",
        ])
        var error = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, configuration, &error, error.count) else {
            rd_kafka_conf_destroy(configuration)
            throw SidecarError(
                message: "cannot create a Kafka consumer: \(String(nulTerminated: error))", connectionLost: false)
        }
        guard let topic = rd_kafka_topic_new(handle, name, nil) else {
            rd_kafka_destroy(handle)
            throw SidecarError(message: "invalid Kafka topic \(name)", connectionLost: false)
        }
        do {
            try Self.create(name, on: handle)
            try Self.startAtEnd(topic, name, on: handle)
        } catch {
            // Released here, not by deinit: it does not run for an initialiser that throws first.
            rd_kafka_topic_destroy(topic)
            rd_kafka_destroy(handle)
            throw error
        }
        self.handle = handle
        self.topic = topic
    }

    /// Starts consuming at the end as of now, asked for before starting: RD_KAFKA_OFFSET_END would
    /// be looked up later, and what is produced meanwhile skipped.
    private static func startAtEnd(_ topic: OpaquePointer, _ name: String, on handle: OpaquePointer)
        throws(SidecarError)
    {
        var (low, end): (Int64, Int64) = (0, 0)
        var asked = rd_kafka_query_watermark_offsets(handle, name, 0, &low, &end, 10_000)
        // A topic just created is unknown to librdkafka until its metadata is read again.
        for _ in 0..<100 where asked == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION {
            usleep(50_000)
            asked = rd_kafka_query_watermark_offsets(handle, name, 0, &low, &end, 10_000)
        }
        guard asked == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw SidecarError(
                message: "cannot read the end of Kafka topic \(name): \(String(cString: rd_kafka_err2str(asked)))",
                connectionLost: true)
        }
        guard rd_kafka_consume_start(topic, 0, end) == 0 else {
            let reason = String(cString: rd_kafka_err2str(rd_kafka_last_error()))
            throw SidecarError(message: "cannot consume Kafka topic \(name): \(reason)", connectionLost: true)
        }
    }

    deinit {
        rd_kafka_consume_stop(topic, 0)
        rd_kafka_topic_destroy(topic)
        rd_kafka_destroy(handle)
    }

    /// Hands `each` the values of up to `limit` records (each valid only during its call), waiting up
    /// to `timeoutMs` for the first (and not at all for the others: a batch waits for a full one,
    /// or its whole timeout).
    /// - Throws: when the broker reports an error other than the partition's end, and no record came.
    func poll(limit: Int, timeoutMs: Int32, _ each: (UnsafeRawBufferPointer) -> Void) throws(SidecarError) {
        guard let first = rd_kafka_consume(topic, 0, timeoutMs) else { return }
        var rest = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: max(limit - 1, 1))
        let count = max(rd_kafka_consume_batch(topic, 0, 0, &rest, rest.count), 0)
        var (read, failure) = (0, SidecarError?.none)
        for message in [first] + rest.prefix(count) {
            guard let message else { continue }
            defer { rd_kafka_message_destroy(message) }
            let error = message.pointee.err
            if error == RD_KAFKA_RESP_ERR_NO_ERROR {
                each(UnsafeRawBufferPointer(start: message.pointee.payload, count: message.pointee.len))
                read += 1
            } else if error != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                failure = SidecarError(
                    message: "Kafka consume failed: \(String(cString: rd_kafka_err2str(error)))", connectionLost: true)
            }
        }
        if let failure, read == 0 { throw failure }
    }

    /// Creates topic `name` with one partition; one that exists already is fine.
    private static func create(_ name: String, on handle: OpaquePointer) throws(SidecarError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let newTopic = rd_kafka_NewTopic_new(name, 1, 1, &error, error.count) else {
            throw SidecarError(
                message: "invalid Kafka topic \(name): \(String(nulTerminated: error))", connectionLost: false)
        }
        defer { rd_kafka_NewTopic_destroy(newTopic) }
        // Records as large as the consumer reads (a broker's default is about 1 MiB).
        _ = rd_kafka_NewTopic_set_config(newTopic, "max.message.bytes", "\(maxRecordBytes)")
        // Kept an hour: a node reads its topic from the end when it starts, so older records are
        // read by nobody (a broker's default keeps them a week).
        _ = rd_kafka_NewTopic_set_config(newTopic, "retention.ms", "\(retentionMs)")
        let queue = rd_kafka_queue_new(handle)
        defer { rd_kafka_queue_destroy(queue) }
        var topics: [OpaquePointer?] = [newTopic]
        rd_kafka_CreateTopics(handle, &topics, 1, nil, queue)
        guard let event = rd_kafka_queue_poll(queue, 10_000) else {
            throw SidecarError(message: "Kafka did not answer the creation of topic \(name)", connectionLost: true)
        }
        defer { rd_kafka_event_destroy(event) }
        var count = 0
        guard let result = rd_kafka_event_CreateTopics_result(event),
            let results = rd_kafka_CreateTopics_result_topics(result, &count), count == 1
        else {
            let reason = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? "no result"
            throw SidecarError(message: "cannot create Kafka topic \(name): \(reason)", connectionLost: true)
        }
        let code = rd_kafka_topic_result_error(results[0])
        guard code == RD_KAFKA_RESP_ERR_NO_ERROR || code == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS else {
            throw SidecarError(
                message: "cannot create Kafka topic \(name): \(String(cString: rd_kafka_err2str(code)))",
                connectionLost: true)
        }
    }
}
