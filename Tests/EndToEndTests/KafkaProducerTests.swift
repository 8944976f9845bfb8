import Foundation
import Logging
import Synchronization
import Testing

@testable import Persistence

/// librdkafka behind its one Swift type: its log lines go through swift-log, a line a second at
/// most; its topic handles are bounded.
@Suite(.timeLimit(.minutes(1))) struct KafkaProducerTests {
    /// A broker that is not there: librdkafka complains many times a second, the log gets one line
    /// a second (and librdkafka writes nothing to standard error of its own).
    @Test func librdkafkaLogsThroughSwiftLogRateLimited() throws {
        let kept = KeptLog()
        let logger = kept.logger("kafka-test")
        let producer = try KafkaProducer(
            brokers: "127.0.0.1:1", options: ["reconnect.backoff.ms": "10", "reconnect.backoff.max.ms": "10"],
            log: RateLimitedLog(logger: logger, intervalMs: 1_000)
        ) { _, _ in }
        _ = try producer.produce(topic: "acb.test.audit", key: [], value: [1], sequence: 1)
        let start = Date()
        while Date().timeIntervalSince(start) < 2.5 { producer.poll(timeoutMs: 100) }
        let logged = kept.lines.withLock { $0 }
        #expect(logged.contains { $0.hasPrefix("librdkafka: ") }, "librdkafka's lines reach swift-log")
        #expect(logged.count <= 4, "at most one line a second: \(logged)")
    }

    /// Each level has its own allowance, and lines below the logger's level do not use one up.
    @Test func aHeldBackInfoLineDoesNotHoldBackAnError() {
        let kept = KeptLog()
        var logger = kept.logger("rate-test")
        logger.logLevel = .info
        let log = RateLimitedLog(logger: logger, intervalMs: 60_000)
        log.log(level: .debug, "dropped, below the level")
        log.log(level: .info, "first info")
        log.log(level: .info, "held back")
        log.log(level: .error, "an error")
        #expect(kept.lines.withLock { $0 } == ["first info", "an error"])
    }

    @Test func topicHandlesAreBounded() throws {
        let producer = try KafkaProducer(
            brokers: "127.0.0.1:1", log: RateLimitedLog(logger: Logger(label: "kafka-test")), maxTopicHandles: 2
        ) { _, _ in }
        for tenant in ["a", "b", "c", "d", "e"] {
            _ = try producer.produce(topic: "acb.\(tenant).audit", key: [], value: [1], sequence: 1)
            #expect(producer.topicHandles <= 2)
        }
    }
}
