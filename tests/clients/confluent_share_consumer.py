"""confluent-kafka's (librdkafka's) ShareConsumer against `rivulet serve` (KIP-932).

Share consumers of one group take turns on a three-partition topic: the first releases one
record explicitly and then leaves mid-stream holding records it never acknowledged; a
second process acquires records and dies without closing (os._exit: its connection just
ends); the last consumer receives the released, abandoned and orphaned records again, with
delivery count 2, well before their 30 s locks would have expired, and accepts everything.
Every record must be accepted exactly once.

The group is set to start at the earliest offset through IncrementalAlterConfigs on the
GROUP resource (share.auto.offset.reset), as Kafka's own tests do.

Usage: python confluent_share_consumer.py BOOTSTRAP
Prints OK and a JSON summary,
and exits 0, when every step did what Kafka does; exits 1 with the reason otherwise.
"""
import json
import subprocess
import sys
import time

from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                  ResourceType)

TOPIC = "jobs"
RECORDS = 300


def fail(message):
    print("FAIL", message)
    sys.exit(1)


def share_consumer(bootstrap):
    consumer = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": "workers",
        "share.acknowledgement.mode": "explicit",
        "max.poll.records": 50,
    })
    consumer.subscribe([TOPIC])
    return consumer


def poll_some(consumer, seconds=20.0):
    """The data messages of one non-empty poll (or none after `seconds`)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        batch = [m for m in consumer.poll(1.0) if m.error() is None]
        if batch:
            return batch
    return []


def main():
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)]).values():
        future.result(30)
    earliest = ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)
    group = ConfigResource(ResourceType.GROUP, "workers", incremental_configs=[earliest])
    for future in admin.incremental_alter_configs([group]).values():
        future.result(30)
    described = admin.describe_configs([ConfigResource(ResourceType.GROUP, "workers")])
    configs = list(described.values())[0].result(30)
    reset = configs["share.auto.offset.reset"].value
    if reset != "earliest":
        fail("share.auto.offset.reset described as %r" % reset)
    bogus = ConfigEntry("share.no.such.key", "1", incremental_operation=AlterConfigOpType.SET)
    try:
        for future in admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, "workers",
                                                                      incremental_configs=[bogus])]).values():
            future.result(30)
        fail("an unknown group config was accepted")
    except Exception as e:  # KafkaException carrying INVALID_CONFIG
        if "INVALID_CONFIG" not in str(e) and "nvalid" not in str(e):
            fail("an unknown group config was refused oddly: %r" % e)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(RECORDS):
        producer.produce(TOPIC, key=("k%d" % i).encode(), value=("job-%d" % i).encode())
    if producer.flush(30) != 0:
        fail("records left unsent")

    accepted = {}
    counts = {}
    first = share_consumer(bootstrap)
    batch = poll_some(first)
    if len(batch) < 3:
        fail("the first consumer received %d records" % len(batch))
    released = batch[0].value().decode()
    first.acknowledge(batch[0], AcknowledgeType.RELEASE)
    for m in batch[1:]:
        first.acknowledge(m, AcknowledgeType.ACCEPT)
        accepted[m.value().decode()] = accepted.get(m.value().decode(), 0) + 1
    first.commit_sync(30)
    # The next poll's records are held, never acknowledged: the consumer leaves with them.
    abandoned = [m.value().decode() for m in poll_some(first)]
    if not abandoned:
        fail("the first consumer received no second batch")
    first.close()

    # A consumer process that dies holding records: the broker releases them when its
    # connection ends.
    crasher = subprocess.run([sys.executable, __file__, "--crash", bootstrap], capture_output=True,
                             text=True, timeout=60)
    orphaned = json.loads(crasher.stdout.strip().splitlines()[-1]) if crasher.stdout.strip() else []
    if not orphaned:
        fail("the crashing consumer acquired nothing: %r" % crasher.stderr[-500:])
    crashed_at = time.time()

    second = share_consumer(bootstrap)
    deadline = time.time() + 90
    while len(accepted) < RECORDS and time.time() < deadline:
        for m in poll_some(second, 5.0):
            value = m.value().decode()
            counts[value] = m.delivery_count()
            second.acknowledge(m, AcknowledgeType.ACCEPT)
            accepted[value] = accepted.get(value, 0) + 1
        second.commit_sync(30)
    second.close()

    expected = {"job-%d" % i for i in range(RECORDS)}
    if set(accepted) != expected:
        fail("missing %d records, e.g. %r" % (len(expected - set(accepted)), sorted(expected - set(accepted))[:5]))
    twice = [v for v, n in accepted.items() if n != 1]
    if twice:
        fail("accepted more than once: %r" % twice[:5])
    # Every earlier delivery counts: one for the first consumer, one more if the crashing
    # consumer held the record too.
    def expected(value, before):
        return before + 1 + (1 if value in orphaned else 0)

    if counts.get(released) != expected(released, 1):
        fail("the released record %s came back with delivery count %r" % (released, counts.get(released)))
    took = time.time() - crashed_at
    if took > 20:
        fail("the orphaned records took %.1f s to come back (their locks last 30 s)" % took)
    firsts = set(abandoned) | {released}
    wrong = [v for v in abandoned if counts.get(v) != expected(v, 1)]
    wrong += [v for v in orphaned if v not in firsts and counts.get(v) != 2]
    if wrong:
        fail("records redelivered with the wrong count: %r" % [(v, counts.get(v)) for v in wrong[:5]])
    print("OK " + json.dumps({"accepted": len(accepted), "released": released, "abandoned": len(abandoned),
                              "orphaned": len(orphaned), "first_batch": len(batch)}))
    return 0


def crash(bootstrap):
    """Acquires one batch, prints its values, and exits without closing anything."""
    import os
    consumer = share_consumer(bootstrap)
    values = [m.value().decode() for m in poll_some(consumer)]
    print(json.dumps(values), flush=True)
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--crash":
        crash(sys.argv[2])
    sys.exit(main())
