"""Share groups and topic recompression, measured with librdkafka (confluent-kafka).

Against one `rivulet serve` (BOOTSTRAP), in one run:
1. Produce N records of 1 KiB (uncompressed, acks=all) to a topic with the default
   compression.type (producer) and to one with compression.type=zstd (the broker
   recompresses every batch); records/s of each, and the ratio.
2. Read the first topic with a classic consumer (group, auto commit) and with a share
   consumer (implicit acknowledgement: every record acquired, delivered and accepted);
   records/s of each, and the ratio.

Usage: python share_and_recompression.py BOOTSTRAP [N]
Prints one JSON object.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, ShareConsumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)


def produce(bootstrap, topic, n, value):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "compression.codec": "none", "queue.buffering.max.messages": 200000})
    start = time.time()
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=b"k%d" % (i % 1000), value=value)
                break
            except BufferError:
                p.poll(0.01)
    if p.flush(120) != 0:
        raise SystemExit("records left unsent in %s" % topic)
    return n / (time.time() - start)


def consume_classic(bootstrap, topic, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-classic",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, start = 0, None
    deadline = time.time() + 300
    while got < n and time.time() < deadline:
        for m in c.consume(500, 1.0):
            if m.error() is None:
                start = start or time.time()
                got += 1
    c.close()
    return got / (time.time() - start)


def consume_share(bootstrap, topic, n):
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": "bench-share", "max.poll.records": 500})
    c.subscribe([topic])
    got, start = 0, None
    deadline = time.time() + 300
    while got < n and time.time() < deadline:
        batch = [m for m in c.poll(1.0) if m.error() is None]
        if batch:
            start = start or time.time()
            got += len(batch)
    c.close()
    return got / (time.time() - start)


def main():
    bootstrap = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic("bench-plain", 4, 1), NewTopic("bench-zstd", 4, 1, config={"compression.type": "zstd"})]
    for f in admin.create_topics(topics).values():
        f.result(30)
    earliest = ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)
    for f in admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, "bench-share",
                                                             incremental_configs=[earliest])]).values():
        f.result(30)
    # Text-like values, so zstd has something to do.
    value = (b"order 12345 customer 67890 item widget quantity 3 " * 21)[:1024]
    plain = produce(bootstrap, "bench-plain", n, value)
    zstd = produce(bootstrap, "bench-zstd", n, value)
    classic = consume_classic(bootstrap, "bench-plain", n)
    share = consume_share(bootstrap, "bench-plain", n)
    print(json.dumps({
        "records": n,
        "produce_plain_rps": round(plain), "produce_recompressed_zstd_rps": round(zstd),
        "recompression_ratio": round(zstd / plain, 2),
        "consume_classic_rps": round(classic), "consume_share_rps": round(share),
        "share_ratio": round(share / classic, 2),
    }))


if __name__ == "__main__":
    main()
