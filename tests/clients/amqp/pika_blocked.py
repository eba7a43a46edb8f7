"""pika against Rivulet's disk alarm: a publisher is sent connection.blocked when the data
directory's file system runs low and connection.unblocked when space comes back; its
publish waits in between and is confirmed after. Prints `OK <check>` per check.

Arguments: AMQP URL, the /v1/status URL, a path on the data directory's file system, and
how many bytes to allocate there to raise the alarm."""

import json
import os
import sys
import threading
import time
import urllib.request

import pika

URL, STATUS, FILLER, FILL_BYTES = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)


def status():
    with urllib.request.urlopen(STATUS, timeout=5) as r:
        return json.load(r)


def wait_status(pred, what):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        s = status()
        if pred(s):
            return s
        time.sleep(0.2)
    check(False, what)


conn = pika.BlockingConnection(pika.URLParameters(URL))
events = []
conn.add_on_connection_blocked_callback(lambda c, m: events.append(("blocked", m.method.reason)))
conn.add_on_connection_unblocked_callback(lambda c, m: events.append(("unblocked", None)))
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare("blocked_q", durable=True)
ch.basic_publish("", "blocked_q", b"before", pika.BasicProperties(delivery_mode=2))
check(events == [], f"no alarm yet: {events}")

fd = os.open(FILLER, os.O_CREAT | os.O_WRONLY, 0o600)
os.posix_fallocate(fd, 0, FILL_BYTES)
os.close(fd)
raised = wait_status(lambda s: s.get("alarm"), "the alarm shows in /v1/status")
check("low on disk" in raised["alarm"], f"the reason names the disk: {raised['alarm']}")
print("OK the alarm is raised", flush=True)

seen = {}


def free_space():
    time.sleep(2)
    seen["channels"] = status()["amqp_channels"]
    os.remove(FILLER)


threading.Thread(target=free_space, daemon=True).start()
started = time.monotonic()
ch.basic_publish("", "blocked_q", b"during", pika.BasicProperties(delivery_mode=2))
waited = time.monotonic() - started
check(waited >= 1.5, f"the publish waited for the alarm to clear: {waited:.2f} s")
check(seen.get("channels", 0) >= 1, f"the open channel is counted: {seen}")
deadline = time.monotonic() + 5
while len(events) < 2 and time.monotonic() < deadline:
    conn.process_data_events(time_limit=0.1)
check([e[0] for e in events] == ["blocked", "unblocked"], f"blocked, then unblocked: {events}")
check("low on disk" in events[0][1], f"blocked with the reason: {events}")
print("OK the publisher was blocked and unblocked", flush=True)

q = ch.queue_declare("blocked_q", durable=True, passive=True)
check(q.method.message_count == 2, f"both messages queued: {q.method.message_count}")
wait_status(lambda s: s.get("alarm") is None, "the alarm clears in /v1/status")
conn.close()
print("OK both messages confirmed and queued", flush=True)
