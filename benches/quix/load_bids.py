"""Produce the Nexmark bids in a JSON-lines file into a fresh 3-partition topic.

    python load_bids.py <bids.jsonl> <topic> [bootstrap]

Key = auction id as a string, value = the JSON line as is."""

import json
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> None:
    path, topic = sys.argv[1], sys.argv[2]
    bootstrap = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1:39092"

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name, future in admin.create_topics([NewTopic(topic, 3, 1)]).items():
        future.result()  # raises if the topic could not be created
        print(f"created topic {name} (3 partitions, replication 1)")

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"}
    )
    failed = 0

    def on_delivery(err, _msg):
        nonlocal failed
        if err is not None:
            failed += 1

    start, sent = time.monotonic(), 0
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            key = str(json.loads(line)["auction"]).encode()
            while True:
                try:
                    producer.produce(topic, value=line, key=key, on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: wait for deliveries
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
    producer.flush()
    elapsed = time.monotonic() - start
    print(f"produced {sent} records ({failed} failed) in {elapsed:.1f}s")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
