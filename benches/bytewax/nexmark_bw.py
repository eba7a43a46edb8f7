"""Nexmark q0 (pass-through) and a 10 s tumbling count per auction on Bytewax,
reading bids loaded by ../quix/load_bids.py and writing to a fresh 3-partition output topic.

    BW_QUERY=q0|count BW_TOPIC=<input-topic> [BW_EVENTS=920000] [BW_BOOTSTRAP=127.0.0.1:39092] \
        python -m bytewax.run nexmark_bw:flow -w 1

No recovery directory is given, so there is no snapshotting/resume (at-least-once in
effect at best). KafkaSource(tail=False) sets enable.partition.eof and stops each
partition at its end, so the dataflow terminates after the last record; an atexit hook
then takes the end marks (after KafkaSink.close() has flushed the producer), checks the
input count, counts the records in the output topic and prints one RESULT line.
CPU = getrusage(RUSAGE_SELF) user+system (all threads, librdkafka's included) from the
first record seen by the dataflow to the end of the run."""

import atexit
import json
import os
import resource
import time
from datetime import datetime, timedelta, timezone

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window

QUERY = os.environ["BW_QUERY"]
IN_TOPIC = os.environ["BW_TOPIC"]
EVENTS = int(os.environ.get("BW_EVENTS", "920000"))
BOOTSTRAP = os.environ.get("BW_BOOTSTRAP", "127.0.0.1:39092")
RUN_ID = f"bw-{QUERY}-{int(time.time())}"
OUT_TOPIC = f"{IN_TOPIC}-{RUN_ID}"
T0 = time.monotonic()
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_T_FROZEN = datetime.now(timezone.utc)


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the process
    return ru.ru_utime + ru.ru_stime


_admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # keep alive until created
for _name, _fut in _admin.create_topics([NewTopic(OUT_TOPIC, 3, 1)]).items():
    _fut.result()

stats = {"seen": 0, "late": 0}
marks = {}


def count_input(msg):
    stats["seen"] += 1
    if stats["seen"] == 1:
        marks["first"] = (time.monotonic(), cpu_s())
    return msg


def decode(msg):
    return json.loads(msg.value)


# BW_DIAG=1 (diagnostic runs only, not the measured ones): per auction, count bids whose
# event-time gap to the auction's previous bid is smaller than the wall-clock gap - 1 s,
# i.e. the bids the per-key EventClock watermark (max ts - 1 s + system time elapsed)
# declares late; and the largest wall gap between consecutive records of a partition.
DIAG = os.environ.get("BW_DIAG") == "1"
diag = {"pred_late": 0, "max_part_gap_s": [0.0, 0.0, 0.0]}
_last_key, _last_part = {}, {}


def diagnose(b_msg):
    b, part = b_msg
    now = time.monotonic()
    prev = _last_key.get(b["auction"])
    if prev is not None and (b["date_time"] - prev[1]) / 1000 < (now - prev[0]) - 1.0:
        diag["pred_late"] += 1
    _last_key[b["auction"]] = (now, b["date_time"])
    if part in _last_part:
        diag["max_part_gap_s"][part] = max(diag["max_part_gap_s"][part], now - _last_part[part])
    _last_part[part] = now
    return b


flow = Dataflow(f"nexmark_{QUERY}")
src = op.input("bids", flow, KafkaSource([BOOTSTRAP], [IN_TOPIC], tail=False))
bids = op.map("decode", op.map("count_input", src, count_input), decode)
if DIAG:
    bids = op.map(
        "diag",
        op.map("decode_p", op.map("count_input_d", src, lambda m: m), lambda m: (json.loads(m.value), m.partition)),
        diagnose,
    )

if QUERY == "q0":
    out = op.map(
        "encode",
        bids,
        lambda b: KafkaSinkMessage(str(b["auction"]).encode(), json.dumps(b).encode()),
    )
elif QUERY == "count":
    # Variant (not the measured configuration): BW_FROZEN_NOW=1 gives the clock a constant
    # now_getter, so the watermark is purely event-time (key's max date_time - 1 s) and
    # does not advance with the wall clock.
    frozen = {"now_getter": lambda: _T_FROZEN} if os.environ.get("BW_FROZEN_NOW") == "1" else {}
    clock = EventClock(
        ts_getter=lambda b: EPOCH + timedelta(milliseconds=b["date_time"]),
        wait_for_system_duration=timedelta(seconds=1),
        **frozen,
    )
    windower = TumblingWindower(length=timedelta(seconds=10), align_to=EPOCH)
    wo = count_window("count", bids, clock, windower, lambda b: str(b["auction"]))

    def count_late(_item):
        stats["late"] += 1

    op.inspect("late", wo.late, lambda _step, item: count_late(item))

    def encode(item):
        key, (wid, n) = item
        start_ms = wid * 10_000
        value = {"auction": int(key), "window_start": start_ms, "window_end": start_ms + 10_000, "count": n}
        return KafkaSinkMessage(key.encode(), json.dumps(value).encode())

    out = op.map("encode", wo.down, encode)
else:
    raise SystemExit(f"unknown query {QUERY}")

op.output("out", out, KafkaSink([BOOTSTRAP], OUT_TOPIC))


def count_records(topic: str) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"verify-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    n, eof = 0, set()
    while len(eof) < len(parts):
        for msg in consumer.consume(10_000, timeout=1.0):
            if msg.error():
                eof.add(msg.partition())
            else:
                n += 1
    consumer.close()
    return n


@atexit.register
def report() -> None:
    if "first" not in marks:
        return
    t_end, cpu_end = time.monotonic(), cpu_s()
    t_first, cpu_first = marks["first"]
    cpu = cpu_end - cpu_first
    result = {
        "engine": "bytewax",
        "query": QUERY,
        "guarantee": "none (no recovery dir)",
        "events": stats["seen"],
        "events_ok": stats["seen"] == EVENTS,
        "late_dropped": stats["late"],
        "processing_wall_s": round(t_end - t_first, 2),
        "total_wall_s": round(t_end - T0, 2),
        "cpu_s": round(cpu, 2),
        "events_per_cpu_s": round(stats["seen"] / cpu),
        "output_topic": OUT_TOPIC,
        "output_records": count_records(OUT_TOPIC),
    }
    if DIAG:
        result["diag"] = {"pred_late": diag["pred_late"],
                          "max_part_gap_s": [round(g, 2) for g in diag["max_part_gap_s"]]}
    print("RESULT " + json.dumps(result), flush=True)
