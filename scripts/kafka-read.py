#!/usr/bin/env python3
"""Reads records from a Kafka topic from the beginning and prints each as one JSON line.

Tests run it as a subprocess with the sidecars' Python (`$ACB_PYTHON`, from scripts/sidecars.sh):

    $ACB_PYTHON scripts/kafka-read.py --brokers 127.0.0.1:7092 --topic acb.demo.audit --count 10

Each line: {"topic", "partition", "offset", "key", "value"} with key and value decoded as UTF-8
(invalid bytes replaced; null stays null), plus "record" with the value parsed as JSON when it
parses. Exits 0 once it has printed --count records, 2 when --timeout passes first (after
printing what it got), 1 on a consumer error.
"""
import argparse
import json
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def text(data):
    return None if data is None else data.decode("utf-8", errors="replace")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True, help="bootstrap servers, host:port[,host:port]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True, help="stop after this many records")
    parser.add_argument("--timeout", type=float, default=30.0, help="overall seconds (default 30)")
    parser.add_argument("--group", help="consumer group (default: a new one, so reading starts at the beginning)")
    parser.add_argument("--no-group", action="store_true",
                        help="join no group: read every partition the topic has when it is first seen"
                             " (first record in milliseconds instead of the ~3 s of a group join)")
    args = parser.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group or f"kafka-read-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # Tansu 0.6 answers a JoinGroup after half the session timeout: librdkafka's default of
        # 45 s would make the first record wait 22 s; 6 s (Apache Kafka's minimum) makes it 3 s.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        # A topic the writer has not created yet is waited for, not an error.
        "allow.auto.create.topics": False,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    deadline = time.monotonic() + args.timeout
    if not args.no_group:
        consumer.subscribe([args.topic])
    else:
        partitions = None
        while not partitions:
            if time.monotonic() >= deadline:
                print(f"kafka-read: timed out after {args.timeout}s waiting for topic {args.topic}", file=sys.stderr)
                return 2
            topic = consumer.list_topics(args.topic, timeout=max(deadline - time.monotonic(), 0.1)).topics.get(args.topic)
            partitions = topic.partitions if topic is not None and topic.error is None else None
            if not partitions:
                time.sleep(0.2)
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    got = 0
    try:
        while got < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"kafka-read: timed out after {args.timeout}s with {got} of {args.count} records",
                      file=sys.stderr)
                return 2
            message = consumer.poll(min(left, 0.5))
            if message is None:
                continue
            if message.error():
                code = message.error().code()
                # Not yet there, or a partition end: keep waiting until the deadline.
                if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF,
                            KafkaError._UNKNOWN_TOPIC, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                    continue
                print(f"kafka-read: {message.error()}", file=sys.stderr)
                return 1
            line = {
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "key": text(message.key()),
                "value": text(message.value()),
            }
            try:
                line["record"] = json.loads(line["value"])
            except (TypeError, ValueError):
                pass
            print(json.dumps(line), flush=True)
            got += 1
        return 0
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
