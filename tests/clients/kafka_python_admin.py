"""kafka-python's KafkaAdminClient against `rivulet serve`: CreatePartitions,
IncrementalAlterConfigs (SET, APPEND, DELETE), OffsetDelete, DescribeProducers,
DescribeLogDirs and DescribeGroups' authorized operations.

Usage: python kafka_python_admin.py BOOTSTRAP
Prints OK and a JSON summary, and exits 0, when every step did what Kafka does; exits 1
with the reason otherwise.
"""
import json
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata


def fail(message):
    print("FAIL", message)
    sys.exit(1)


def topic_configs(admin, topic):
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    return {name: config["value"] for name, config in result["topic"][topic].items()}


def main():
    bootstrap = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("grown", num_partitions=2, replication_factor=1,
                                  topic_configs={"cleanup.policy": "compact"})])

    # CreatePartitions: 2 -> 5, then a shrink is refused.
    admin.create_partitions({"grown": 5})
    partitions = admin.describe_topics(["grown"])[0]["partitions"]
    if len(partitions) != 5:
        fail("expected 5 partitions after CreatePartitions, got %d" % len(partitions))
    shrink = admin.create_partitions({"grown": 3}, raise_errors=False)
    shrink_codes = [result.error_code for result in shrink.results]
    if shrink_codes != [37]:  # INVALID_PARTITIONS
        fail("shrinking to 3 partitions was not refused with INVALID_PARTITIONS: %r" % (shrink,))

    # A record reaches a new partition, from an idempotent producer.
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    meta = producer.send("grown", key=b"k", value=b"to partition 4", partition=4).get(timeout=30)
    producer.send("grown", key=b"k", value=b"again", partition=4).get(timeout=30)
    producer.close()
    if meta.partition != 4:
        fail("record went to partition %d" % meta.partition)

    # DescribeProducers: partition 4 remembers the producer and its last sequence (1).
    producers = admin.describe_producers([TopicPartition("grown", 4), TopicPartition("grown", 0)])
    active = producers[TopicPartition("grown", 4)].active_producers
    if len(active) != 1 or active[0].last_sequence != 1 or active[0].current_transaction_start_offset != -1:
        fail("DescribeProducers of partition 4: %r" % (active,))
    if producers[TopicPartition("grown", 0)].active_producers:
        fail("partition 0 had no producer: %r" % (producers,))

    # DescribeLogDirs: one directory, partition 4 holds bytes, partition 0 none.
    dirs = admin.describe_log_dirs({"grown": [0, 4]})
    log_dirs = dirs[0]["log_dirs"]
    if len(log_dirs) != 1:
        fail("expected one log dir: %r" % (dirs,))
    sizes = {p["partition_index"]: p["partition_size"]
             for t in log_dirs[0]["topics"] if t["name"] == "grown" for p in t["partitions"]}
    if sorted(sizes) != [0, 4] or sizes[4] <= 0 or sizes[0] != 0:
        fail("DescribeLogDirs sizes: %r" % (sizes,))

    # IncrementalAlterConfigs: SET one key, APPEND to a list, DELETE an override.
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "grown", configs={
        "retention.ms": (AlterConfigOp.SET, "3600000"),
        "cleanup.policy": (AlterConfigOp.APPEND, "delete"),
    })], incremental=True)
    after_set = topic_configs(admin, "grown")
    if after_set.get("retention.ms") != "3600000":
        fail("retention.ms after SET: %r" % after_set.get("retention.ms"))
    if sorted(after_set.get("cleanup.policy", "").split(",")) != ["compact", "delete"]:
        fail("cleanup.policy after APPEND: %r" % after_set.get("cleanup.policy"))
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "grown", configs={
        "retention.ms": (AlterConfigOp.DELETE, None),
    })], incremental=True)
    after_delete = topic_configs(admin, "grown")
    if after_delete.get("retention.ms") == "3600000":
        fail("retention.ms still overridden after DELETE")
    if sorted(after_delete.get("cleanup.policy", "").split(",")) != ["compact", "delete"]:
        fail("DELETE of one key changed another: %r" % after_delete.get("cleanup.policy"))

    # OffsetDelete: commit offsets of two partitions for an empty group, delete one.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="trimmed", enable_auto_commit=False)
    consumer.commit({TopicPartition("grown", 0): OffsetAndMetadata(0, "", -1),
                     TopicPartition("grown", 4): OffsetAndMetadata(1, "", -1)})
    consumer.close()
    before = admin.list_group_offsets("trimmed")["trimmed"]
    deleted = admin.delete_group_offsets("trimmed", [TopicPartition("grown", 4)])
    if any(error.errno != 0 for error in deleted.values()):
        fail("OffsetDelete answered %r" % (deleted,))
    after = admin.list_group_offsets("trimmed")["trimmed"]
    kept = sorted(tp.partition for tp in after)
    if sorted(tp.partition for tp in before) != [0, 4] or kept != [0]:
        fail("offsets before %r, after deleting partition 4: %r" % (before, after))

    # DescribeGroups with authorized operations: every group operation is allowed.
    described = admin.describe_groups(["trimmed"])
    operations = sorted(str(op) for op in (described["trimmed"].get("authorized_operations") or []))
    if operations != ["DELETE", "DESCRIBE", "READ"]:
        fail("group authorized operations: %r" % (described,))

    admin.close()
    print("OK " + json.dumps({"partitions": len(partitions), "cleanup.policy": after_delete["cleanup.policy"],
                              "offsets_kept": kept, "log_dir_bytes": sizes[4],
                              "group_operations": operations}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
