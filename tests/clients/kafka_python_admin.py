"""kafka-python's KafkaAdminClient against `rivulet serve`: CreatePartitions,
IncrementalAlterConfigs (SET, APPEND, DELETE) and OffsetDelete.

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

    # A record reaches a new partition.
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    meta = producer.send("grown", key=b"k", value=b"to partition 4", partition=4).get(timeout=30)
    producer.close()
    if meta.partition != 4:
        fail("record went to partition %d" % meta.partition)

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

    admin.close()
    print("OK " + json.dumps({"partitions": len(partitions), "cleanup.policy": after_delete["cleanup.policy"],
                              "offsets_kept": kept}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
