import Bus
import CRdKafka
import Logging

/// What librdkafka calls back, for a producer or a consumer: delivery reports (a record's sequence
/// number and nil, or the error that failed it), on the polling thread, and log lines, from its own
/// threads, which go to swift-log through a ``RateLimitedLog``, not to standard error.
final class KafkaCallbacks {
    let delivered: (UInt64, String?) -> Void
    let log: RateLimitedLog

    init(delivered: @escaping (UInt64, String?) -> Void = { _, _ in }, log: RateLimitedLog) {
        self.delivered = delivered
        self.log = log
    }

    /// A librdkafka configuration of `settings` whose opaque is this object (kept alive by the
    /// client that owns both) and whose log lines come here.
    func configuration(_ settings: [String: String]) throws(SidecarError) -> OpaquePointer {
        let configuration = rd_kafka_conf_new()!  // NULL only when out of memory
        var error = [CChar](repeating: 0, count: 512)
        for (name, value) in settings
        where rd_kafka_conf_set(configuration, name, value, &error, error.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(configuration)
            throw SidecarError(
                message: "librdkafka setting \(name): \(String(nulTerminated: error))", connectionLost: false)
        }
        rd_kafka_conf_set_opaque(configuration, Unmanaged.passUnretained(self).toOpaque())
        rd_kafka_conf_set_log_cb(configuration) { handle, level, facility, line in
            guard let handle, let opaque = rd_kafka_opaque(handle), let line else { return }
            // syslog levels: 0-3 errors, 4 warning, 5-6 notice and info, 7 debug.
            let swiftLevel: Logger.Level = level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug
            Unmanaged<KafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue().log.log(
                level: swiftLevel, "librdkafka: \(String(cString: line))",
                metadata: ["facility": "\(facility.map { String(cString: $0) } ?? "")"])
        }
        return configuration
    }
}
