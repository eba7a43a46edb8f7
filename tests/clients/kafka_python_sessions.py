"""kafka-python's incremental fetch sessions (KIP-227) against `rivulet serve`.

Usage: python kafka_python_sessions.py BOOTSTRAP METRICS_URL TOPIC PARTITIONS COUNT
Consumes a topic of many partitions while records arrive on a few at a time, so most
fetches are incremental. Prints OK and exits 0 when every record came back exactly once,
in order per partition, and the broker reported a cached fetch session meanwhile.
"""
import re
import sys
import time
import urllib.request

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def sessions(metrics_url):
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    found = re.search(r"^rivulet_fetch_sessions (\d+)", text, re.M)
    return int(found.group(1)) if found else -1


def main():
    bootstrap, metrics_url, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    partitions, count = int(sys.argv[4]), int(sys.argv[5])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=100)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    seen = {}
    peak_sessions = 0
    deadline = time.time() + 90
    sent = 0
    while (sent < count or sum(len(v) for v in seen.values()) < count) and time.time() < deadline:
        # A burst to three partitions at a time: the others have nothing new.
        for i in range(min(20, count - sent)):
            n = sent + i
            producer.send(topic, partition=(n // 20 * 3 + n % 3) % partitions, value=b"%d" % n)
        sent = min(count, sent + 20)
        producer.flush(timeout=30)
        for tp, records in consumer.poll(timeout_ms=200).items():
            seen.setdefault(tp.partition, []).extend((r.offset, int(r.value)) for r in records)
        peak_sessions = max(peak_sessions, sessions(metrics_url))
    producer.close()
    consumer.close()

    values = sorted(v for recs in seen.values() for _, v in recs)
    if values != list(range(count)):
        print("records missing or duplicated: got", len(values), "of", count)
        return 1
    for p, recs in seen.items():
        offsets = [o for o, _ in recs]
        if offsets != list(range(len(offsets))):
            print("partition", p, "out of order:", offsets[:10])
            return 1
    if peak_sessions < 1:
        print("the broker never reported a fetch session:", peak_sessions)
        return 1
    print("OK", count, "records over", partitions, "partitions; fetch sessions", peak_sessions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
