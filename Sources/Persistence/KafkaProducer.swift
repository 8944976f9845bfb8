import Bus
import CRdKafka
import Foundation
import Logging

/// A librdkafka producer: idempotent, `acks=all`, lz4-compressed batches. Blocking and not
/// thread-safe: it belongs to the one thread that produces and polls it.
///
/// Each record carries a sequence number; delivery reports, served by ``poll(timeoutMs:)`` on the
/// same thread, go to the `delivered` handler given at creation. librdkafka's own log lines go to
/// swift-log through a ``RateLimitedLog``, not to standard error. Topic handles are cached, at most
/// ``maxTopicHandles`` of them.
final class KafkaProducer {
    private let handle: OpaquePointer
    private let callbacks: KafkaCallbacks
    private var topics: [String: OpaquePointer] = [:]
    /// Most topic handles kept (one per tenant's audit topic); when full, the cache starts over
    /// (librdkafka keeps a released handle alive while records of it are in flight).
    let maxTopicHandles: Int

    /// Topic handles held now.
    var topicHandles: Int { topics.count }

    /// - Parameters:
    ///   - brokers: `host:port[,host:port…]`.
    ///   - options: further librdkafka settings, applied last.
    init(
        brokers: String, options: [String: String] = [:], log: RateLimitedLog, maxTopicHandles: Int = 1_024,
        delivered: @escaping (UInt64, String?) -> Void
    ) throws(SidecarError) {
        self.maxTopicHandles = maxTopicHandles
        let settings =
            [
                "bootstrap.servers": brokers,
                "enable.idempotence": "true",
                "acks": "all",
                "compression.type": "lz4",
                "linger.ms": "5",
                "batch.num.messages": "10000",
                // Bounded: produce() reports a full queue beyond this, and the caller waits.
                "queue.buffering.max.messages": "100000",
                // A record not confirmed in 10 s fails; the audit stream then starts a new producer
                // and produces again from its journal. (A new producer is what recovers: after a
                // broker restart an idempotent producer may never deliver again, see
                // ENVIRONMENT.md's Tansu notes.)
                "message.timeout.ms": "10000",
                "reconnect.backoff.ms": "100",
                "reconnect.backoff.max.ms": "2000",
            ].merging(options) { _, given in given }
        callbacks = KafkaCallbacks(delivered: delivered, log: log)
        let configuration = try callbacks.configuration(settings)
        rd_kafka_conf_set_dr_msg_cb(configuration) { _, message, opaque in
            guard let message, let opaque else { return }
            let callbacks = Unmanaged<KafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
            let sequence = UInt64(UInt(bitPattern: message.pointee._private))
            let failure =
                message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR
                ? nil : String(cString: rd_kafka_err2str(message.pointee.err))
            callbacks.delivered(sequence, failure)
        }
        var error = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, configuration, &error, error.count) else {
            rd_kafka_conf_destroy(configuration)  // taken over only on success
            throw SidecarError(
                message: "cannot create a Kafka producer: \(String(nulTerminated: error))", connectionLost: false)
        }
        self.handle = handle
    }

    /// RD_KAFKA_PARTITION_UA: the partitioner picks the partition by key.
    static let anyPartition: Int32 = -1

    deinit {
        for (_, topic) in topics { rd_kafka_topic_destroy(topic) }
        rd_kafka_destroy(handle)
    }

    /// Hands a record to librdkafka (copied), for `partition` (by default the partitioner picks one by key).
    /// - Returns: false if its queue is full (``poll(timeoutMs:)`` and try again).
    /// - Throws: for any other refusal (an invalid topic, a fatal producer error).
    func produce(
        topic: String, partition: Int32 = KafkaProducer.anyPartition, key: [UInt8], value: some ContiguousBytes,
        sequence: UInt64
    ) throws(SidecarError) -> Bool {
        let handle = try self.topic(topic)
        let copy: Int32 = 0x2  // RD_KAFKA_MSG_F_COPY
        let result = value.withUnsafeBytes { value in
            key.withUnsafeBytes { key in
                rd_kafka_produce(
                    handle, partition, copy, UnsafeMutableRawPointer(mutating: value.baseAddress), value.count,
                    key.baseAddress, key.count, UnsafeMutableRawPointer(bitPattern: UInt(sequence)))
            }
        }
        guard result != 0 else { return true }
        let error = rd_kafka_last_error()
        if error == RD_KAFKA_RESP_ERR__QUEUE_FULL { return false }
        throw SidecarError(
            message: "Kafka produce failed: \(String(cString: rd_kafka_err2str(error)))", connectionLost: true)
    }

    /// Serves delivery reports, waiting up to `timeoutMs` for one.
    func poll(timeoutMs: Int32) { rd_kafka_poll(handle, timeoutMs) }

    /// Waits up to `timeoutMs` for every queued record to be delivered or failed. - Returns: whether all were.
    func flush(timeoutMs: Int32) -> Bool { rd_kafka_flush(handle, timeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR }

    /// Records queued in librdkafka and not yet reported.
    var queued: Int { Int(rd_kafka_outq_len(handle)) }

    private func topic(_ name: String) throws(SidecarError) -> OpaquePointer {
        if let topic = topics[name] { return topic }
        if topics.count >= maxTopicHandles {
            for (_, topic) in topics { rd_kafka_topic_destroy(topic) }
            topics.removeAll()
        }
        guard let topic = rd_kafka_topic_new(handle, name, nil) else {
            throw SidecarError(message: "invalid Kafka topic \(name)", connectionLost: false)
        }
        topics[name] = topic
        return topic
    }
}
