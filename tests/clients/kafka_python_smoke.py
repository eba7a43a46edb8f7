"""kafka-python against `rivulet serve`: default (idempotent) producer, then a consumer group.

Usage: python kafka_python_smoke.py BOOTSTRAP TOPIC GROUP COUNT
Prints OK and exits 0 when every message came back exactly once, in order.
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer


def main():
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    producer = KafkaProducer(bootstrap_servers=bootstrap)  # default settings
    futures = [
        producer.send(topic, key=b"k%d" % (i % 7), value=b"python-%d" % i) for i in range(count)
    ]
    producer.flush(timeout=60)
    offsets = [f.get(timeout=60).offset for f in futures]
    producer.close()
    if sorted(offsets) != list(range(count)):
        print("unexpected offsets:", offsets)
        return 1

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    values = []
    deadline = time.time() + 90
    while len(values) < count and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.commit()
    committed = consumer.committed(next(iter(consumer.assignment())))
    consumer.close()

    expected = [b"python-%d" % i for i in range(count)]
    if values != expected:
        print("unexpected values:", values[:10], "... total", len(values))
        return 1
    if committed != count:
        print("unexpected committed offset:", committed)
        return 1
    print("OK", len(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
