"""Nexmark q0 (pass-through) and a 10 s tumbling count per auction on Quix Streams,
reading bids loaded by load_bids.py and writing results to a fresh output topic.

    python nexmark.py <q0|count> <at-least-once|exactly-once> <input-topic> [events] [bootstrap]

Stops itself once `events` input records (default 920000) have passed through the
pipeline, then prints input events per CPU-second of this process (user+system of all
threads, librdkafka's included) from the first processed record to the end of the run
(final checkpoint: producer flush and offset commit). Start-up and group join are
excluded from that figure but reported as total wall time."""

import json
import resource
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application
from quixstreams.models import TopicConfig


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the process
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    query, guarantee, in_topic = sys.argv[1], sys.argv[2], sys.argv[3]
    events = int(sys.argv[4]) if len(sys.argv) > 4 else 920_000
    bootstrap = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1:39092"
    run_id = f"{query}-{'eos' if guarantee == 'exactly-once' else 'alo'}-{int(time.time())}"
    t0 = time.monotonic()

    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-{in_topic}-{run_id}",  # fresh group every run
        auto_offset_reset="earliest",
        processing_guarantee=guarantee,  # commit_interval left at its 5 s default
        state_dir=f"/tmp/quix-state/{run_id}",
    )
    bids = app.topic(
        in_topic,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=lambda value, _headers, _ts, _type: value["date_time"],
    )
    out = app.topic(
        f"{in_topic}-{run_id}",
        key_serializer="str",
        value_serializer="json",
        config=TopicConfig(num_partitions=3, replication_factor=1),
    )

    seen, marks = 0, {}

    def count_input(_value):
        nonlocal seen
        seen += 1
        if seen == 1:
            marks["first"] = (time.monotonic(), cpu_s())
        elif seen == events:
            app.stop()  # the run loop finishes this record, then commits and returns

    sdf = app.dataframe(bids).update(count_input)
    if query == "count":
        # Windows close when the partition's stream time passes end + grace.
        sdf = sdf.tumbling_window(duration_ms=10_000, grace_ms=1_000).count()
        sdf = sdf.final(closing_strategy="partition")
    sdf.to_topic(out)

    app.run()
    t_end, cpu_end = time.monotonic(), cpu_s()
    t_first, cpu_first = marks["first"]
    cpu = cpu_end - cpu_first
    result = {
        "query": query,
        "guarantee": guarantee,
        "commit_interval_s": app.config.commit_interval,
        "events": seen,
        "processing_wall_s": round(t_end - t_first, 2),
        "total_wall_s": round(t_end - t0, 2),
        "cpu_s": round(cpu, 2),
        "events_per_cpu_s": round(seen / cpu),
        "output_topic": out.name,
        "output_records": count_records(bootstrap, out.name),
    }
    print("RESULT " + json.dumps(result), flush=True)


def count_records(bootstrap: str, topic: str) -> int:
    """Committed records in `topic` (transaction markers are not counted)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{topic}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])  # offset 0 = beginning
    n, eof = 0, set()
    while len(eof) < len(parts):
        for msg in consumer.consume(10_000, timeout=1.0):
            if msg.error():
                eof.add(msg.partition())
            else:
                n += 1
    consumer.close()
    return n


if __name__ == "__main__":
    main()
