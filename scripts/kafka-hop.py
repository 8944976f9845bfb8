#!/usr/bin/env python3
"""Measures one hop through the broker as the cluster's nodes make it: a record produced to
partition 0 of a fresh topic (idempotent, acks=all, no linger) until a consumer reading that
partition has it, with the consumer's fetch waiting up to --fetch-wait-ms. Prints the produce
round trip and the end-to-end p50 and max, in ms (docs/cluster.md, BENCHMARKS.md's cluster section).

    eval "$(scripts/sidecars.sh env)"
    $ACB_PYTHON scripts/kafka-hop.py --brokers "$ACB_KAFKA_BROKERS" --fetch-wait-ms 1
"""
import argparse
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", default="127.0.0.1:7092")
    parser.add_argument("--fetch-wait-ms", type=int, default=10)
    parser.add_argument("--records", type=int, default=200)
    arguments = parser.parse_args()
    topic = f"acb-hop-{uuid.uuid4().hex[:8]}"
    producer = Producer(
        {"bootstrap.servers": arguments.brokers, "linger.ms": 0, "acks": "all", "enable.idempotence": True}
    )
    consumer = Consumer(
        {
            "bootstrap.servers": arguments.brokers,
            "group.id": topic,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": arguments.fetch_wait_ms,
        }
    )
    producer.produce(topic, b"first", partition=0)
    producer.flush(10)
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, end)])
    time.sleep(1)
    produced, hops = [], []
    for index in range(arguments.records):
        start = time.perf_counter()
        producer.produce(topic, b"%d" % index, partition=0)
        producer.flush(10)
        produced.append(time.perf_counter() - start)
        while consumer.poll(1.0) is None:
            pass
        hops.append(time.perf_counter() - start)
    produced.sort()
    hops.sort()
    print(
        f"fetch wait {arguments.fetch_wait_ms} ms: produce p50 {produced[len(produced) // 2] * 1000:.2f} ms, "
        f"end to end p50 {hops[len(hops) // 2] * 1000:.2f} ms, max {hops[-1] * 1000:.2f} ms"
    )
    consumer.close()


if __name__ == "__main__":
    main()
