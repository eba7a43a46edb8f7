"""One round of the AMQP kill -9 test: a confirming publisher and a consumer that acks run
against a durable queue until the broker dies. Every id written to `confirmed` had its
publisher confirm; every id written to `acked` had its ack applied by the broker (a
synchronous method on the same channel returned after it; a channel applies its frames in
order); an id in `acking` but not `acked` had its ack sent when the broker died, applied or
not. `received` lists every delivery as `id redelivered`.

usage: pika_crash_round.py URL DIR ROUND [drain]"""

import os
import sys
import threading

import pika

URL, DIR, ROUND = sys.argv[1], sys.argv[2], sys.argv[3]
DRAIN = len(sys.argv) > 4
QUEUE = "crash_q"


def out(name):
    return open(os.path.join(DIR, f"{name}.{ROUND}"), "a", buffering=1)


def publish():
    confirmed = out("confirmed")
    try:
        conn = pika.BlockingConnection(pika.URLParameters(URL))
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        ch.confirm_delivery()
        i = 0
        while True:
            mid = f"r{ROUND}-{i}"
            ch.basic_publish("", QUEUE, mid.encode(), pika.BasicProperties(delivery_mode=2))
            confirmed.write(mid + "\n")
            i += 1
    except Exception:
        return


def consume():
    received, acking, acked = out("received"), out("acking"), out("acked")
    try:
        conn = pika.BlockingConnection(pika.URLParameters(URL))
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        empty = 0
        while True:
            # Up to 5 deliveries held at once, acknowledged together (multiple).
            held = []
            for _ in range(5):
                method, _, body = ch.basic_get(QUEUE)
                if method is None:
                    break
                mid = body.decode()
                received.write(f"{mid} {int(method.redelivered)}\n")
                held.append((method.delivery_tag, mid))
            if not held:
                empty += 1
                if DRAIN and empty > 20:
                    print("DRAINED", flush=True)
                    return
                conn.sleep(0.01)
                continue
            empty = 0
            for _, mid in held:
                acking.write(mid + "\n")
            ch.basic_ack(held[-1][0], multiple=True)
            ch.queue_declare(QUEUE, durable=True, passive=True)
            for _, mid in held:
                acked.write(mid + "\n")
    except Exception:
        return


threads = [threading.Thread(target=consume)]
if not DRAIN:
    threads.append(threading.Thread(target=publish))
for t in threads:
    t.start()
for t in threads:
    t.join()
