"""Two Kafka listeners of different security protocols on one broker: SASL_SSL for the
admin, PLAINTEXT on loopback for clients without a login (the user ANONYMOUS). Each
listener's clients are sent back to it by Metadata, and ANONYMOUS needs ACLs like any
user. Prints `OK <check>` per check.

Usage: python listeners_clients.py SASL_SSL_BOOTSTRAP PLAINTEXT_BOOTSTRAP CERT_DIR ADMIN PASSWORD"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

SECURE, PLAIN, CERTS, ADMIN, PASSWORD = sys.argv[1:6]


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)


secure = {"bootstrap.servers": SECURE, "security.protocol": "SASL_SSL", "ssl.ca.location": f"{CERTS}/ca.pem",
          "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": ADMIN, "sasl.password": PASSWORD}
plain = {"bootstrap.servers": PLAIN, "topic.metadata.refresh.interval.ms": 1000}

p = Producer(secure)
for i in range(5):
    p.produce("two-listeners", value=f"m{i}")
check(p.flush(20) == 0, "the admin writes over SASL_SSL")
brokers = p.list_topics(timeout=10).brokers
check([b.port for b in brokers.values()] == [int(SECURE.rsplit(":", 1)[1])],
      f"SASL_SSL clients are sent to the SASL_SSL listener: {brokers}")
brokers = Producer(plain).list_topics(timeout=10).brokers
check([b.port for b in brokers.values()] == [int(PLAIN.rsplit(":", 1)[1])],
      f"PLAINTEXT clients are sent to the PLAINTEXT listener: {brokers}")
print("OK each listener's clients are sent back to it", flush=True)

anonymous = Producer({**plain, "message.timeout.ms": 10000})
reports = []
try:
    anonymous.produce("two-listeners", value=b"anon", on_delivery=lambda err, msg: reports.append(err))
    anonymous.flush(15)
except KafkaException as e:
    reports.append(e.args[0])
check(reports and reports[0] is not None and reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
      f"ANONYMOUS may not write without an ACL: {reports}")
admin = AdminClient(secure)
grants = [AclBinding(ResourceType.TOPIC, "two-listeners", ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                     AclOperation.READ, AclPermissionType.ALLOW),
          AclBinding(ResourceType.GROUP, "anon-group", ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                     AclOperation.READ, AclPermissionType.ALLOW)]
for f in admin.create_acls(grants).values():
    f.result(timeout=10)
c = Consumer({**plain, "group.id": "anon-group", "auto.offset.reset": "earliest"})
c.subscribe(["two-listeners"])
got = []
deadline = time.monotonic() + 30
while len(got) < 5 and time.monotonic() < deadline:
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        got.append(m.value().decode())
c.close()
check(got == [f"m{i}" for i in range(5)], f"ANONYMOUS reads over PLAINTEXT once granted: {got}")
print("OK PLAINTEXT clients are ANONYMOUS and need ACLs", flush=True)
