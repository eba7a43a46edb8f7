"""confluent-kafka's (librdkafka's) AdminClient against `rivulet serve`: create_partitions,
incremental_alter_configs, describe_configs with every standard key, delete_records,
list_offsets, alter/list consumer group offsets, describe_cluster, describe_topics with
authorized operations, describe_consumer_groups and delete_consumer_groups.

Usage: python confluent_admin.py BOOTSTRAP
Prints OK and a JSON summary, and exits 0, when every step did what Kafka does; exits 1 with
the reason otherwise.
"""
import json
import sys

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, OffsetSpec, ResourceType)

# Kafka's standard topic config keys (as `kafka-configs --describe --all` lists them).
STANDARD_KEYS = [
    "cleanup.policy", "compression.type", "delete.retention.ms", "file.delete.delay.ms", "flush.messages",
    "flush.ms", "follower.replication.throttled.replicas", "index.interval.bytes",
    "leader.replication.throttled.replicas", "local.retention.bytes", "local.retention.ms",
    "max.compaction.lag.ms", "max.message.bytes", "message.downconversion.enable", "message.format.version",
    "message.timestamp.after.max.ms", "message.timestamp.before.max.ms", "message.timestamp.difference.max.ms",
    "message.timestamp.type", "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas",
    "preallocate", "remote.storage.enable", "retention.bytes", "retention.ms", "segment.bytes",
    "segment.index.bytes", "segment.jitter.ms", "segment.ms", "unclean.leader.election.enable",
]


def fail(message):
    print("FAIL", message)
    sys.exit(1)


def wait_all(futures):
    return {k: f.result(30) for k, f in futures.items()}


def main():
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_all(admin.create_topics([NewTopic("ledger", num_partitions=2, replication_factor=1)]))

    wait_all(admin.create_partitions([NewPartitions("ledger", 4)]))
    try:
        wait_all(admin.create_partitions([NewPartitions("ledger", 3)]))
        fail("shrinking to 3 partitions was accepted")
    except Exception as e:
        if "INVALID_PARTITIONS" not in str(e) and "nvalid" not in str(e):
            fail("the shrink was refused oddly: %r" % e)
    described = admin.describe_topics(TopicCollection(["ledger"]), include_authorized_operations=True)
    topic = described["ledger"].result(30)
    if len(topic.partitions) != 4:
        fail("expected 4 partitions, found %d" % len(topic.partitions))
    operations = sorted(str(op).split(".")[-1] for op in (topic.authorized_operations or []))
    if "READ" not in operations or "WRITE" not in operations:
        fail("topic authorized operations: %r" % operations)

    # incremental_alter_configs: SET two keys, then DELETE one; every standard key described.
    changes = [ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
               ConfigEntry("min.compaction.lag.ms", "60000", incremental_operation=AlterConfigOpType.SET)]
    wait_all(admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, "ledger",
                                                             incremental_configs=changes)]))
    drop = [ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)]
    wait_all(admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, "ledger",
                                                             incremental_configs=drop)]))
    configs = list(wait_all(admin.describe_configs([ConfigResource(ResourceType.TOPIC, "ledger")])).values())[0]
    missing = [k for k in STANDARD_KEYS if k not in configs]
    if missing:
        fail("standard keys not described: %r" % missing)
    if configs["min.compaction.lag.ms"].value != "60000" or configs["min.compaction.lag.ms"].is_default:
        fail("min.compaction.lag.ms: %r" % configs["min.compaction.lag.ms"])
    if not configs["retention.ms"].is_default:
        fail("retention.ms still overridden after DELETE")

    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce("ledger", value=b"entry %d" % i, partition=3)
    if producer.flush(30) != 0:
        fail("records left unsent")

    # delete_records before offset 6, then list_offsets shows the new earliest.
    deleted = wait_all(admin.delete_records([TopicPartition("ledger", 3, 6)]))
    low = list(deleted.values())[0].low_watermark
    earliest = wait_all(admin.list_offsets({TopicPartition("ledger", 3): OffsetSpec.earliest()}))
    latest = wait_all(admin.list_offsets({TopicPartition("ledger", 3): OffsetSpec.latest()}))
    earliest_offset = list(earliest.values())[0].offset
    latest_offset = list(latest.values())[0].offset
    if (low, earliest_offset, latest_offset) != (6, 6, 10):
        fail("after delete_records: low %r, earliest %r, latest %r" % (low, earliest_offset, latest_offset))

    # Group offsets: alter, list, describe the (empty) group, delete it.
    offsets = ConsumerGroupTopicPartitions("auditors", [TopicPartition("ledger", 3, 8)])
    wait_all(admin.alter_consumer_group_offsets([offsets]))
    listed = wait_all(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("auditors")]))
    committed = [tp.offset for tp in list(listed.values())[0].topic_partitions if tp.partition == 3]
    if committed != [8]:
        fail("committed offsets: %r" % committed)
    group = list(wait_all(admin.describe_consumer_groups(["auditors"])).values())[0]
    if str(group.state).split(".")[-1] != "EMPTY":
        fail("group state %r" % group.state)
    wait_all(admin.delete_consumer_groups(["auditors"]))

    cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
    if len(cluster.nodes) != 1 or cluster.controller is None:
        fail("describe_cluster: %r" % cluster)
    print("OK " + json.dumps({"partitions": len(topic.partitions), "described_keys": len(configs),
                              "low_watermark": low, "committed": committed[0],
                              "cluster_id": cluster.cluster_id, "topic_operations": operations}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
