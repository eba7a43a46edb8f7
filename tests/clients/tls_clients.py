"""Clients over TLS against `rivulet serve --auth --tls-cert ... --tls-client-ca ...`:
confluent-kafka (librdkafka) SASL_SSL with SCRAM-SHA-512 and a client certificate, the same
without a certificate refused, kafka-python SASL_SSL with PLAIN, pika over amqps, and
HTTPS. Prints `OK <check>` per check.

Usage: python tls_clients.py BOOTSTRAP AMQP_PORT HTTPS_BASE CERT_DIR USER PASSWORD"""

import base64
import json
import ssl
import sys
import time
import urllib.request

import pika
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)
from kafka import KafkaProducer

BOOTSTRAP, AMQP_PORT, HTTPS, CERTS, USER, PASSWORD = sys.argv[1:7]
CA, CERT, KEY = f"{CERTS}/ca.pem", f"{CERTS}/client.pem", f"{CERTS}/client-key.pem"


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)


base = {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_SSL", "ssl.ca.location": CA,
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER, "sasl.password": PASSWORD}
mtls = {**base, "ssl.certificate.location": CERT, "ssl.key.location": KEY}

p = Producer(mtls)
for i in range(20):
    p.produce("tls-topic", value=f"t{i}")
check(p.flush(20) == 0, "librdkafka delivered over TLS")
c = Consumer({**mtls, "group.id": "tls-group", "auto.offset.reset": "earliest"})
c.subscribe(["tls-topic"])
got = []
deadline = time.monotonic() + 30
while len(got) < 20 and time.monotonic() < deadline:
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        got.append(m.value().decode())
c.close()
check(got == [f"t{i}" for i in range(20)], f"read back over TLS (sendfile is off): {got[:3]}")
print("OK librdkafka SASL_SSL SCRAM-SHA-512 with a client certificate", flush=True)

no_cert = Producer({**base, "reconnect.backoff.ms": 5000})
try:
    no_cert.list_topics(timeout=5)
    check(False, "a client without a certificate is refused")
except KafkaException:
    pass
del no_cert
print("OK a client without a certificate is refused", flush=True)

# A certificate alone (security.protocol=SSL, no SASL) logs in as its common name; that
# user needs ACLs like any other.
cert_only = {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SSL", "ssl.ca.location": CA,
             "ssl.certificate.location": CERT, "ssl.key.location": KEY,
             "topic.metadata.refresh.interval.ms": 1000, "message.timeout.ms": 10000}


def produce_one(producer, topic):
    reports = []
    try:
        producer.produce(topic, value=b"by certificate", on_delivery=lambda err, msg: reports.append(err))
    except KafkaException as e:
        return e.args[0]
    producer.flush(15)
    check(len(reports) == 1, "one delivery report")
    return reports[0]


by_cert = Producer(cert_only)
err = produce_one(by_cert, "tls-cert-topic")
check(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"no ACL yet: {err}")
admin = AdminClient(mtls)
grant = AclBinding(ResourceType.TOPIC, "tls-cert", ResourcePatternType.PREFIXED, "User:rivulet-client",
                   "*", AclOperation.ALL, AclPermissionType.ALLOW)
for f in admin.create_acls([grant]).values():
    f.result(timeout=10)
deadline = time.monotonic() + 20
while (err := produce_one(by_cert, "tls-cert-topic")) is not None:
    check(time.monotonic() < deadline, f"the certificate's user writes once granted: {err}")
    time.sleep(0.5)
print("OK librdkafka SSL with a client certificate logs in as its common name", flush=True)

kp = KafkaProducer(bootstrap_servers=BOOTSTRAP, security_protocol="SASL_SSL", ssl_cafile=CA,
                   ssl_certfile=CERT, ssl_keyfile=KEY, sasl_mechanism="PLAIN",
                   sasl_plain_username=USER, sasl_plain_password=PASSWORD)
kp.send("tls-topic", b"from kafka-python").get(timeout=10)
kp.close()
print("OK kafka-python SASL_SSL PLAIN", flush=True)

context = ssl.create_default_context(cafile=CA)
context.load_cert_chain(CERT, KEY)
params = pika.ConnectionParameters("localhost", int(AMQP_PORT), "/", pika.PlainCredentials(USER, PASSWORD),
                                   ssl_options=pika.SSLOptions(context, "localhost"))
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.queue_declare("tls_q")
ch.basic_publish("", "tls_q", b"over amqps")
_, _, body = ch.basic_get("tls_q", auto_ack=True)
check(body == b"over amqps", "amqps publish and get")
conn.close()
print("OK pika over amqps", flush=True)

# EXTERNAL: the certificate alone logs in, as its common name (granted tls-cert* above).
external = pika.ConnectionParameters("localhost", int(AMQP_PORT), "/", pika.credentials.ExternalCredentials(),
                                     ssl_options=pika.SSLOptions(context, "localhost"))
conn = pika.BlockingConnection(external)
ch = conn.channel()
ch.queue_declare("tls-cert-q")
ch.basic_publish("", "tls-cert-q", b"by certificate over amqps")
_, _, body = ch.basic_get("tls-cert-q", auto_ack=True)
check(body == b"by certificate over amqps", f"EXTERNAL publish and get: {body}")
try:
    ch.queue_declare("not-granted-q")
    check(False, "the certificate's user is limited by its ACLs")
except pika.exceptions.ChannelClosedByBroker as e:
    check(e.reply_code == 403 and "rivulet-client" in e.reply_text, f"403 for the certificate's user: {e}")
conn.close()
print("OK pika EXTERNAL logs in as the certificate's common name", flush=True)

request = urllib.request.Request(f"{HTTPS}/v1/topics")
token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
request.add_header("Authorization", f"Basic {token}")
with urllib.request.urlopen(request, context=context, timeout=10) as r:
    topics = [t["name"] for t in json.load(r)["topics"]]
check("tls-topic" in topics, f"HTTPS lists the topic: {topics}")
print("OK HTTPS with a client certificate", flush=True)
