"""ACLs against `rivulet serve --auth`, with real clients: a user without an ACL gets the
client's normal authorization error on every front end (librdkafka, kafka-python, HTTP,
pika); ACLs granted with kafka-python's and librdkafka's admin APIs take effect at run
time without reconnecting; listings show only what the user may describe; deleting the
ACLs takes the access away again. Prints `OK <check>` per check.

Usage: python acl_clients.py BOOTSTRAP AMQP_PORT HTTP_BASE ADMIN_USER ADMIN_PASSWORD"""

import base64
import json
import sys
import time
import urllib.error
import urllib.request

import pika
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion)
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                         KafkaAdminClient, ResourcePattern, ResourcePatternFilter)
from kafka.admin import ResourceType as KResourceType

BOOTSTRAP, AMQP_PORT, HTTP_BASE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ADMIN, ADMIN_PASSWORD = sys.argv[4], sys.argv[5]
USER, PASSWORD = "dave", "dave-password-1"


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)


def sasl(user, password):
    return {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password}


def produce_one(producer, topic, value):
    """The delivery error of one record (None when delivered)."""
    reports = []
    try:
        producer.produce(topic, value=value, on_delivery=lambda err, msg: reports.append(err))
    except KafkaException as e:
        # librdkafka refuses at once a topic it knows the user may not write.
        return e.args[0]
    producer.flush(15)
    check(len(reports) == 1, f"one delivery report for {topic}")
    return reports[0]


def eventually(what, attempt, seconds=20):
    deadline = time.monotonic() + seconds
    while True:
        result = attempt()
        if result:
            return result
        check(time.monotonic() < deadline, what)
        time.sleep(0.5)


def http(path, user, password, method="GET"):
    req = urllib.request.Request(HTTP_BASE + path, method=method)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


admin = AdminClient(sasl(ADMIN, ADMIN_PASSWORD))
info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(USER, info, PASSWORD.encode())]).values():
    f.result(timeout=10)
for f in admin.create_topics([NewTopic("acl-orders", 1), NewTopic("acl-secret", 1)]).values():
    f.result(timeout=10)
admin_producer = Producer(sasl(ADMIN, ADMIN_PASSWORD))
check(produce_one(admin_producer, "acl-secret", b"classified") is None, "the admin writes anywhere")

# No ACL: librdkafka's producer gets TOPIC_AUTHORIZATION_FAILED, and the topic list is empty.
conf = {**sasl(USER, PASSWORD), "topic.metadata.refresh.interval.ms": 1000, "message.timeout.ms": 10000}
producer = Producer(conf)
err = produce_one(producer, "acl-orders", b"first")
check(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"refused: {err}")
check("acl-secret" not in producer.list_topics(timeout=10).topics, "no topic is listed without describe")
print("OK a missing ACL gives librdkafka TOPIC_AUTHORIZATION_FAILED", flush=True)

# kafka-python's admin grants write on every topic starting acl-o; the same producer,
# without reconnecting, delivers once its metadata refreshes.
kadmin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=ADMIN,
                          sasl_plain_password=ADMIN_PASSWORD)
write = ACL(f"User:{USER}", "*", ACLOperation.WRITE, ACLPermissionType.ALLOW,
            ResourcePattern(KResourceType.TOPIC, "acl-o", ACLResourcePatternType.PREFIXED))
created = kadmin.create_acls([write])
check(not created["failed"] and len(created["succeeded"]) == 1, f"create_acls: {created}")
eventually("the grant takes effect without reconnecting",
           lambda: produce_one(producer, "acl-orders", b"granted") is None)
listed = producer.list_topics(timeout=10).topics
check("acl-orders" in listed and "acl-secret" not in listed, f"only describable topics: {sorted(listed)}")
any_filter = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                       ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY))
acls, error = kadmin.describe_acls(any_filter)
mine = [a for a in acls if a.principal == f"User:{USER}"]
check(error is None or error.errno == 0, f"describe_acls: {error}")
check(len(mine) == 1 and mine[0].resource_pattern.pattern_type == ACLResourcePatternType.PREFIXED,
      f"describe_acls shows the binding: {mine}")
print("OK an ACL granted with kafka-python takes effect without reconnecting", flush=True)

# A consumer without read on its group gets GROUP_AUTHORIZATION_FAILED; librdkafka's
# create_acls grants topic and group, and the same consumer then reads.
consumer = Consumer({**sasl(USER, PASSWORD), "group.id": "acl-group", "auto.offset.reset": "earliest",
                     "topic.metadata.refresh.interval.ms": 1000})
consumer.subscribe(["acl-orders"])
codes = set()


def consumer_error():
    m = consumer.poll(0.5)
    if m is not None and m.error() is not None:
        codes.add(m.error().code())
    return codes & {KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED}


eventually("the consumer is refused", consumer_error)
grants = [AclBinding(ResourceType.TOPIC, "acl-orders", ResourcePatternType.LITERAL, f"User:{USER}", "*",
                     AclOperation.READ, AclPermissionType.ALLOW),
          AclBinding(ResourceType.GROUP, "acl-group", ResourcePatternType.LITERAL, f"User:{USER}", "*",
                     AclOperation.READ, AclPermissionType.ALLOW)]
for f in admin.create_acls(grants).values():
    f.result(timeout=10)
got = []


def read_some():
    m = consumer.poll(0.5)
    if m is not None and m.error() is None:
        got.append(m.value())
    return b"granted" in got


eventually("the consumer reads once granted", read_some, seconds=40)
consumer.close()
print("OK a consumer is refused without group and topic ACLs and reads once granted", flush=True)

# The user cannot read acl-secret through any front end.
status, body = http("/v1/topics/acl-secret/partitions/0/records?offset=0", USER, PASSWORD)
check(status == 403 and body["error_code"] == 40302, f"HTTP read refused: {status} {body}")
status, body = http("/v1/topics", USER, PASSWORD)
names = [t["name"] for t in body["topics"]]
check(status == 200 and "acl-orders" in names and "acl-secret" not in names, f"HTTP lists: {names}")
status, body = http("/v1/topics/acl-secret/partitions/0/records?offset=0", ADMIN, ADMIN_PASSWORD)
check(status == 200, f"the admin reads over HTTP: {status} {body}")
print("OK HTTP refuses a topic without read and lists only describable topics", flush=True)

params = lambda user, password: pika.ConnectionParameters(
    "127.0.0.1", AMQP_PORT, "/", pika.PlainCredentials(user, password))
conn = pika.BlockingConnection(params(ADMIN, ADMIN_PASSWORD))
ch = conn.channel()
ch.queue_declare("acl-secret-q")
ch.basic_publish("", "acl-secret-q", b"secret")
conn.close()
conn = pika.BlockingConnection(params(USER, PASSWORD))
ch = conn.channel()
try:
    ch.basic_get("acl-secret-q", auto_ack=True)
    check(False, "AMQP basic.get without read is refused")
except pika.exceptions.ChannelClosedByBroker as e:
    check(e.reply_code == 403 and "acl-secret-q" in e.reply_text, f"403 ACCESS_REFUSED: {e}")
ch = conn.channel()
try:
    ch.basic_publish("", "acl-secret-q", b"intrusion")
    ch.queue_declare("acl-secret-q", passive=True)
    check(False, "AMQP publish without write is refused")
except pika.exceptions.ChannelClosedByBroker as e:
    check(e.reply_code == 403, f"publish refused with 403: {e}")
conn.close()
print("OK AMQP refuses a queue without read or write", flush=True)

# Deleting the ACLs takes the access away again.
deleted = admin.delete_acls([AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{USER}",
                                              None, AclOperation.ANY, AclPermissionType.ANY)])
removed = [b for f in deleted.values() for b in f.result(timeout=10)]
check(len(removed) == 3, f"three bindings deleted: {removed}")


def refused_again():
    err = produce_one(producer, "acl-orders", b"after")
    return err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


eventually("access ends once the ACLs are deleted", refused_again)
print("OK deleted ACLs take the access away", flush=True)
