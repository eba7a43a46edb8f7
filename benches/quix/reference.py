"""Batch reference for the windowed count: distinct (auction, 10 s window) pairs in the
bids file, and how many of them Quix can have closed by the end of the input.

    python reference.py <bids.jsonl> <input-topic> [bootstrap]

With closing_strategy="partition" a window [s, s+10 s) of a partition closes once that
partition's stream time T reaches s + 10 s + 1 s grace; T at the end is the date_time of
the partition's last record, read here from the input topic."""

import json
import sys

from confluent_kafka import Consumer, TopicPartition

SIZE_MS, GRACE_MS = 10_000, 1_000


def last_timestamps(bootstrap: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ref-{topic}"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    last = []
    for p in sorted(parts):
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        consumer.assign([TopicPartition(topic, p, high - 1)])
        msg = consumer.poll(10)
        last.append(json.loads(msg.value())["date_time"])
    consumer.close()
    return last


def main() -> None:
    path, topic = sys.argv[1], sys.argv[2]
    bootstrap = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1:39092"
    pairs = set()
    with open(path, "rb") as f:
        for line in f:
            bid = json.loads(line)
            pairs.add((bid["auction"], bid["date_time"] // SIZE_MS * SIZE_MS))
    last = last_timestamps(bootstrap, topic)
    # Closed iff start + SIZE + GRACE <= T; bounds from the earliest/latest partition.
    closed_lo = sum(1 for _, s in pairs if s + SIZE_MS + GRACE_MS <= min(last))
    closed_hi = sum(1 for _, s in pairs if s + SIZE_MS + GRACE_MS <= max(last))
    print(json.dumps({
        "distinct_pairs": len(pairs),
        "partition_last_date_time": last,
        "closed_at_end": closed_lo if closed_lo == closed_hi else [closed_lo, closed_hi],
        "open_at_end": len(pairs) - closed_hi if closed_lo == closed_hi else None,
    }))


if __name__ == "__main__":
    main()
