"""Produce throughput and delivery latency over plaintext against SASL_SSL with
SCRAM-SHA-512, one librdkafka producer (confluent-kafka) per run.

Usage: python tls_vs_plaintext.py BOOTSTRAP COUNT [librdkafka KEY=VALUE ...]
Prints one JSON line: records/s and delivery-report latency percentiles (ms)."""

import json
import sys
import time

from confluent_kafka import Producer

bootstrap, count = sys.argv[1], int(sys.argv[2])
conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 2_000_000}
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    conf[k] = v
p = Producer(conf)
p.list_topics(timeout=10)
value = b"x" * 1024
latencies = []


def on_delivery(err, msg, sent=None):
    if err is not None:
        raise SystemExit(f"delivery failed: {err}")


start = time.perf_counter()
for i in range(count):
    sent = time.perf_counter()
    while True:
        try:
            p.produce("bench-tls", value=value, partition=i % 16,
                      on_delivery=lambda err, msg, sent=sent: latencies.append(time.perf_counter() - sent)
                      if err is None else on_delivery(err, msg))
            break
        except BufferError:
            p.poll(0.001)
    if i % 1000 == 0:
        p.poll(0)
p.flush(60)
elapsed = time.perf_counter() - start
latencies.sort()
pct = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)
print(json.dumps({"records": len(latencies), "records_per_s": round(len(latencies) / elapsed),
                  "p50_ms": pct(0.5), "p99_ms": pct(0.99)}))
