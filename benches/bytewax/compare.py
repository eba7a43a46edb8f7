"""Compare a count output topic with batch counts of the bids file, key by key.

    python compare.py <bids.jsonl> <output-topic> [bootstrap]"""
import json, sys
from collections import Counter
from confluent_kafka import Consumer, TopicPartition

path, topic = sys.argv[1], sys.argv[2]
bootstrap = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1:39092"
ref = Counter()
last = {}
ooo = 0  # bids whose date_time is below an earlier bid of the same auction
with open(path, "rb") as f:
    for line in f:
        b = json.loads(line)
        a, t = b["auction"], b["date_time"]
        if t < last.get(a, t):
            ooo += 1
        last[a] = max(t, last.get(a, t))
        ref[(a, t // 10_000 * 10_000)] += 1
c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cmp-{topic}",
              "enable.auto.commit": False, "enable.partition.eof": True})
parts = c.list_topics(topic, timeout=10).topics[topic].partitions
c.assign([TopicPartition(topic, p, 0) for p in parts])
got, dup, eof = {}, 0, set()
while len(eof) < len(parts):
    for m in c.consume(10_000, timeout=1.0):
        if m.error():
            eof.add(m.partition()); continue
        v = json.loads(m.value())
        k = (v["auction"], v["window_start"])
        dup += k in got
        got[k] = v["count"]
c.close()
equal = sum(1 for k, n in got.items() if ref.get(k) == n)
lower = sum(1 for k, n in got.items() if k in ref and n < ref[k])
missing = sum(1 for k in ref if k not in got)
print(json.dumps({"ref_pairs": len(ref), "ref_out_of_order_bids": ooo, "output_windows": len(got),
                  "duplicate_windows": dup, "equal": equal, "count_lower": lower,
                  "missing": missing, "bids_missing_from_counts": sum(ref.values()) - sum(got.values())}))
