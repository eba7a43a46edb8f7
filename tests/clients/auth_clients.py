"""Kafka and AMQP clients against `rivulet serve --auth`: confluent-kafka (librdkafka) with
SCRAM-SHA-512, kafka-python with PLAIN and SCRAM-SHA-256, users managed through Kafka's
AlterUserScramCredentials, wrong passwords and unauthenticated clients refused, pika with
PLAIN. Prints `OK <check>` per check.

Usage: python auth_clients.py BOOTSTRAP AMQP_PORT ADMIN_USER ADMIN_PASSWORD"""

import sys
import time

import pika
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)
from kafka import KafkaConsumer, KafkaProducer

BOOTSTRAP, AMQP_PORT, ADMIN, ADMIN_PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)


def sasl(mechanism, user, password):
    return {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password}


def librdkafka_round_trip(conf, topic, n):
    errors = []
    p = Producer({**conf, "error_cb": errors.append})
    for i in range(n):
        p.produce(topic, key=f"k{i}", value=f"v{i}")
    left = p.flush(20)
    check(left == 0, f"librdkafka delivered everything ({left} left, errors {errors})")
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    check(got == [f"v{i}" for i in range(n)], f"librdkafka read back in order: {got[:5]}...")


def refused(conf):
    """The error librdkafka reports for a connection the broker refuses."""
    errors = []
    # One attempt, not a retry every 50 ms: failed logins are limited per host.
    p = Producer({**conf, "error_cb": lambda e: errors.append(e),
                  "reconnect.backoff.ms": 5000, "reconnect.backoff.max.ms": 10000})
    try:
        p.list_topics(timeout=5)
        outcome = None
    except KafkaException as e:
        # Error callbacks are served by poll.
        p.poll(1)
        outcome = (errors, str(e))
    # Destroyed now, so it stops reconnecting (failed logins are limited per host).
    del p
    return outcome


# librdkafka, SCRAM-SHA-512.
librdkafka_round_trip(sasl("SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD), "auth-scram512", 20)
print("OK librdkafka SCRAM-SHA-512", flush=True)

# A wrong password and a client without SASL are refused.
outcome = refused(sasl("SCRAM-SHA-512", ADMIN, "not-the-password"))
check(outcome is not None, "a wrong password is refused")
errors, _ = outcome
texts = " ".join(str(e) for e in errors)
check("Authentication failed" in texts and "invalid credentials" in texts, f"the client is told why: {texts}")
check(refused({"bootstrap.servers": BOOTSTRAP}) is not None, "a client without SASL gets no metadata")
print("OK wrong passwords and unauthenticated clients are refused", flush=True)

# kafka-python: PLAIN producer, SCRAM-SHA-256 consumer.
kp = dict(bootstrap_servers=BOOTSTRAP, security_protocol="SASL_PLAINTEXT",
          sasl_plain_username=ADMIN, sasl_plain_password=ADMIN_PASSWORD)
producer = KafkaProducer(sasl_mechanism="PLAIN", **kp)
for i in range(10):
    producer.send("auth-python", value=f"p{i}".encode()).get(timeout=10)
producer.close()
consumer = KafkaConsumer("auth-python", sasl_mechanism="SCRAM-SHA-256", auto_offset_reset="earliest",
                         consumer_timeout_ms=10_000, **kp)
values = [m.value.decode() for m in consumer][:10]
consumer.close()
check(values == [f"p{i}" for i in range(10)], f"kafka-python read back: {values}")
print("OK kafka-python PLAIN and SCRAM-SHA-256", flush=True)

# Users through Kafka's admin API: create bob (SCRAM-SHA-256), describe, log in, delete.
admin = AdminClient(sasl("SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD))
info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)
futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion("bob", info, b"bob-password-1")])
for f in futures.values():
    f.result(timeout=10)
described = admin.describe_user_scram_credentials(["bob"])
bob = described["bob"].result(timeout=10)
mechs = [(c.mechanism, c.iterations) for c in bob.scram_credential_infos]
check(mechs == [(ScramMechanism.SCRAM_SHA_256, 8192)], f"bob has SCRAM-SHA-256 at 8192: {mechs}")
# bob may use the topics and groups whose names start with the ones of this check.
grants = [AclBinding(kind, name, ResourcePatternType.PREFIXED, "User:bob", "*", AclOperation.ALL,
                     AclPermissionType.ALLOW)
          for kind, name in [(ResourceType.TOPIC, "auth-bob"), (ResourceType.GROUP, "g-auth-bob")]]
for f in admin.create_acls(grants).values():
    f.result(timeout=10)
librdkafka_round_trip(sasl("SCRAM-SHA-256", "bob", "bob-password-1"), "auth-bob", 5)
check(refused(sasl("SCRAM-SHA-512", "bob", "bob-password-1")) is not None,
      "bob has no SCRAM-SHA-512 credential")
futures = admin.alter_user_scram_credentials([UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)])
for f in futures.values():
    f.result(timeout=10)
check(refused(sasl("SCRAM-SHA-256", "bob", "bob-password-1")) is not None, "a deleted user is refused")
print("OK users managed with AlterUserScramCredentials", flush=True)

# AMQP: the same users.
params = lambda user, password: pika.ConnectionParameters(
    "127.0.0.1", AMQP_PORT, "/", pika.PlainCredentials(user, password))
conn = pika.BlockingConnection(params(ADMIN, ADMIN_PASSWORD))
ch = conn.channel()
ch.queue_declare("auth_q")
ch.basic_publish("", "auth_q", b"hello")
m, _, body = ch.basic_get("auth_q", auto_ack=True)
check(body == b"hello", "AMQP works with the right password")
conn.close()
try:
    pika.BlockingConnection(params(ADMIN, "wrong"))
    check(False, "AMQP with a wrong password is refused")
except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError) as e:
    check("ACCESS_REFUSED" in str(e) or "403" in str(e), f"403 ACCESS_REFUSED: {e}")
print("OK AMQP PLAIN with the same users", flush=True)
