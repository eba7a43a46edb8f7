"""pika (BlockingConnection) against Rivulet's AMQP front end: publisher confirms and
returns, prefetch, nack/requeue order and redelivery, dead-lettering with x-death, the
delivery limit, basic.get, purge, and channel errors. Prints `OK <check>` per check."""

import sys
import time

import pika
from pika.exceptions import ChannelClosedByBroker, NackError, UnroutableError

URL = sys.argv[1]


def connect():
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    return conn, conn.channel()


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)


def wait_for(conn, got, n):
    """Processes events until `n` deliveries arrived, then a little longer, so a
    delivery beyond `n` would show."""
    deadline = time.monotonic() + 5
    while len(got) < n and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    settle = time.monotonic() + 0.3
    while time.monotonic() < settle:
        conn.process_data_events(time_limit=0.1)


def confirms_and_returns():
    conn, ch = connect()
    ch.confirm_delivery()
    ch.queue_declare("p_confirmed", durable=True)
    for i in range(100):
        ch.basic_publish("", "p_confirmed", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    try:
        ch.basic_publish("", "no_such_queue", b"lost", mandatory=True)
        check(False, "an unroutable mandatory message was confirmed without a return")
    except UnroutableError as e:
        check(len(e.messages) == 1, "one message returned")
    q = ch.queue_declare("p_confirmed", durable=True, passive=True)
    check(q.method.message_count == 100, f"100 confirmed messages queued, not {q.method.message_count}")
    conn.close()
    print("OK confirms and returns", flush=True)


def prefetch_and_requeue_order():
    conn, ch = connect()
    ch.queue_declare("p_prefetch")
    for i in range(10):
        ch.basic_publish("", "p_prefetch", f"m{i}".encode())
    ch.basic_qos(prefetch_count=3)
    got = []

    def on_message(c, method, props, body):
        got.append((method.delivery_tag, body.decode(), method.redelivered))

    ch.basic_consume("p_prefetch", on_message)
    wait_for(conn, got, 3)
    check(len(got) == 3, f"prefetch 3 allows 3 unacked deliveries, got {len(got)}")
    # Requeue the first two (multiple): they come back first, in order, redelivered.
    ch.basic_nack(got[1][0], multiple=True, requeue=True)
    ch.basic_ack(got[2][0])
    del got[:]
    wait_for(conn, got, 3)
    check([b for _, b, _ in got] == ["m0", "m1", "m3"], f"requeued first, in order: {got}")
    check([r for _, _, r in got] == [True, True, False], f"redelivered flags: {got}")
    conn.close()
    print("OK prefetch and requeue order", flush=True)


def dead_letters_and_delivery_limit():
    conn, ch = connect()
    ch.exchange_declare("p_dlx", "fanout")
    ch.queue_declare("p_dead")
    ch.queue_bind("p_dead", "p_dlx")
    args = {"x-dead-letter-exchange": "p_dlx", "x-delivery-limit": 2}
    ch.queue_declare("p_work", arguments=args)
    ch.basic_publish("", "p_work", b"rejected", pika.BasicProperties(headers={"k": "v"}))
    ch.basic_publish("", "p_work", b"retried")
    m, _, _ = ch.basic_get("p_work")
    ch.basic_reject(m.delivery_tag, requeue=False)
    for _ in range(2):
        m, _, body = ch.basic_get("p_work")
        check(body == b"retried", f"the retried message comes back, got {body}")
        ch.basic_nack(m.delivery_tag, requeue=True)
    m, _, _ = ch.basic_get("p_work")
    check(m is None, "the message past its delivery limit is gone from the queue")
    deaths = []
    for _ in range(2):
        m, props, body = ch.basic_get("p_dead", auto_ack=True)
        check(m is not None, "two dead letters")
        death = props.headers["x-death"][0]
        deaths.append((body, death["reason"], death["queue"]))
        if body == b"rejected":
            check(props.headers.get("k") == "v", "the original headers survive dead-lettering")
    check(sorted(deaths) == [(b"rejected", "rejected", "p_work"), (b"retried", "delivery_limit", "p_work")], f"x-death: {deaths}")
    conn.close()
    print("OK dead letters and delivery limit", flush=True)


def message_ttl_and_expiration():
    conn, ch = connect()
    ch.exchange_declare("p_expired_dlx", "fanout")
    ch.queue_declare("p_expired")
    ch.queue_bind("p_expired", "p_expired_dlx")
    ch.queue_declare("p_ttl", arguments={"x-message-ttl": 300, "x-dead-letter-exchange": "p_expired_dlx"})
    ch.basic_publish("", "p_ttl", b"by queue ttl")
    ch.basic_publish("", "p_ttl", b"by own expiration", pika.BasicProperties(expiration="50"))
    time.sleep(0.15)
    m, _, body = ch.basic_get("p_ttl", auto_ack=True)
    check(body == b"by queue ttl", f"the queue TTL has not passed yet, the 50 ms one has: {body}")
    ch.basic_publish("", "p_ttl", b"late")
    time.sleep(0.5)
    m, _, _ = ch.basic_get("p_ttl")
    check(m is None, "an expired message is not delivered")
    reasons = []
    for _ in range(2):
        m, props, body = ch.basic_get("p_expired", auto_ack=True)
        check(m is not None, "expired messages are dead-lettered")
        reasons.append((body, props.headers["x-death"][0]["reason"]))
    check(sorted(reasons) == [(b"by own expiration", "expired"), (b"late", "expired")], f"{reasons}")
    # x-expires: a queue unused that long goes (checked by the broker's maintenance, 1 s).
    ch.queue_declare("p_unused", arguments={"x-expires": 300})
    time.sleep(2.5)
    try:
        ch.queue_declare("p_unused", passive=True)
        check(False, "a queue unused past x-expires is deleted")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 404, f"404 for the expired queue, got {e.reply_code}")
    conn.close()
    print("OK message TTL, expiration and x-expires", flush=True)


def max_length_drops_the_oldest():
    conn, ch = connect()
    ch.exchange_declare("p_maxlen_dlx", "fanout")
    ch.queue_declare("p_maxlen_dead")
    ch.queue_bind("p_maxlen_dead", "p_maxlen_dlx")
    ch.queue_declare("p_max", arguments={"x-max-length": 2, "x-dead-letter-exchange": "p_maxlen_dlx"})
    # A burst on one channel (appended together), then one by one with confirms.
    for i in range(4):
        ch.basic_publish("", "p_max", f"burst {i}".encode())
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "p_max", f"confirmed {i}".encode())
    q = ch.queue_declare("p_max", passive=True, arguments={"x-max-length": 2, "x-dead-letter-exchange": "p_maxlen_dlx"})
    check(q.method.message_count == 2, f"x-max-length 2 keeps 2, not {q.method.message_count}")
    kept = [ch.basic_get("p_max", auto_ack=True)[2] for _ in range(2)]
    check(kept == [b"confirmed 1", b"confirmed 2"], f"the newest are kept: {kept}")
    dead = []
    while True:
        m, props, body = ch.basic_get("p_maxlen_dead", auto_ack=True)
        if m is None:
            break
        check(props.headers["x-death"][0]["reason"] == "maxlen", f"reason maxlen: {props.headers}")
        dead.append(body.decode())
    want = [f"burst {i}" for i in range(4)] + ["confirmed 0"]
    check(dead == want, f"the dropped ones are dead-lettered oldest first: {dead}")
    conn.close()
    print("OK x-max-length drops the oldest", flush=True)


def drain(ch, queue):
    """Every message of `queue` by basic.get: (headers, body) pairs, oldest first."""
    out = []
    while True:
        m, props, body = ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((props.headers or {}, body.decode()))


def max_length_bytes_drops_the_oldest():
    conn, ch = connect()
    ch.exchange_declare("p_maxbytes_dlx", "fanout")
    ch.queue_declare("p_maxbytes_dead")
    ch.queue_bind("p_maxbytes_dead", "p_maxbytes_dlx")
    args = {"x-max-length-bytes": 25, "x-dead-letter-exchange": "p_maxbytes_dlx"}
    ch.queue_declare("p_maxbytes", arguments=args)
    ch.confirm_delivery()
    # Bodies of 10 bytes: 25 bytes keep the newest two.
    for i in range(5):
        ch.basic_publish("", "p_maxbytes", f"ten bytes{i}".encode()[:10])
    q = ch.queue_declare("p_maxbytes", passive=True, arguments=args)
    check(q.method.message_count == 2, f"25 bytes keep two 10-byte messages, not {q.method.message_count}")
    kept = [body for _, body in drain(ch, "p_maxbytes")]
    check(kept == ["ten bytes3", "ten bytes4"], f"the newest are kept: {kept}")
    dead = drain(ch, "p_maxbytes_dead")
    check([b for _, b in dead] == [f"ten bytes{i}" for i in range(3)], f"the oldest dead-lettered: {dead}")
    check(all(h["x-death"][0]["reason"] == "maxlen" for h, _ in dead), "reason maxlen")
    # Unacknowledged messages do not count: with two delivered and held, two more fit.
    for i in range(2):
        ch.basic_publish("", "p_maxbytes", f"held {i}   ".encode()[:10])
    held = [ch.basic_get("p_maxbytes")[0] for _ in range(2)]
    for i in range(2):
        ch.basic_publish("", "p_maxbytes", f"more {i}   ".encode()[:10])
    q = ch.queue_declare("p_maxbytes", passive=True, arguments=args)
    check(q.method.message_count == 2, f"held messages do not count toward the limit: {q.method.message_count}")
    for m in held:
        ch.basic_ack(m.delivery_tag)
    conn.close()
    print("OK x-max-length-bytes drops the oldest", flush=True)


def reject_publish_nacks_new_messages():
    conn, ch = connect()
    ch.exchange_declare("p_reject_fan", "fanout")
    ch.queue_declare("p_reject", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.queue_declare("p_reject_other")
    ch.queue_bind("p_reject", "p_reject_fan")
    ch.queue_bind("p_reject_other", "p_reject_fan")
    ch.confirm_delivery()
    nacked = []
    for i in range(4):
        try:
            ch.basic_publish("p_reject_fan", "", f"m{i}".encode())
        except NackError:
            nacked.append(i)
    check(nacked == [2, 3], f"publishes beyond the limit are nacked, in order: {nacked}")
    check([b for _, b in drain(ch, "p_reject")] == ["m0", "m1"], "the full queue kept the first two")
    other = [b for _, b in drain(ch, "p_reject_other")]
    check(other == ["m0", "m1", "m2", "m3"], f"the other queue got every message: {other}")
    ch.basic_publish("p_reject_fan", "", b"after")
    check([b for _, b in drain(ch, "p_reject")] == ["after"], "room again once consumed")
    # reject-publish-dlx: refused and dead-lettered.
    ch.exchange_declare("p_rejdlx_dlx", "fanout")
    ch.queue_declare("p_rejdlx_dead")
    ch.queue_bind("p_rejdlx_dead", "p_rejdlx_dlx")
    args = {"x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": "p_rejdlx_dlx"}
    ch.queue_declare("p_rejdlx", arguments=args)
    results = []
    for i in range(3):
        try:
            ch.basic_publish("", "p_rejdlx", f"d{i}".encode())
            results.append("ack")
        except NackError:
            results.append("nack")
    check(results == ["ack", "nack", "nack"], f"reject-publish-dlx nacks beyond 1: {results}")
    dead = drain(ch, "p_rejdlx_dead")
    check([b for _, b in dead] == ["d1", "d2"], f"the refused ones are dead-lettered: {dead}")
    check(all(h["x-death"][0]["reason"] == "maxlen" for h, _ in dead), "reason maxlen")
    try:
        ch.queue_declare("p_bad_overflow", arguments={"x-overflow": "reject-everything"})
        check(False, "an unknown x-overflow is refused")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 406, f"406 for an unknown x-overflow, got {e.reply_code}")
    conn.close()
    print("OK reject-publish and reject-publish-dlx", flush=True)


def alternate_exchange_takes_unroutable_messages():
    conn, ch = connect()
    ch.exchange_declare("p_ae_unrouted", "fanout")
    ch.queue_declare("p_ae_leftovers")
    ch.queue_bind("p_ae_leftovers", "p_ae_unrouted")
    ch.exchange_declare("p_ae_orders", "direct", arguments={"alternate-exchange": "p_ae_unrouted"})
    ch.queue_declare("p_ae_paid")
    ch.queue_bind("p_ae_paid", "p_ae_orders", "paid")
    ch.confirm_delivery()
    ch.basic_publish("p_ae_orders", "paid", b"routed")
    # Mandatory, yet not returned: the alternate exchange takes it.
    ch.basic_publish("p_ae_orders", "refunded", b"unroutable", mandatory=True)
    check([b for _, b in drain(ch, "p_ae_paid")] == ["routed"], "the bound queue got its message")
    check([b for _, b in drain(ch, "p_ae_leftovers")] == ["unroutable"], "the alternate exchange took the rest")
    try:
        ch.exchange_declare("p_ae_orders", "direct", arguments={"alternate-exchange": "other"})
        check(False, "another alternate exchange is inequivalent")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 406, f"406 for another alternate exchange, got {e.reply_code}")
    conn.close()
    print("OK alternate exchange", flush=True)


def exchange_to_exchange_bindings():
    conn, ch = connect()
    ch.exchange_declare("p_e2e_events", "topic")
    ch.exchange_declare("p_e2e_audit", "fanout", internal=True)
    ch.exchange_declare("p_e2e_billing", "direct")
    # exchange_bind(destination, source, routing_key)
    ch.exchange_bind("p_e2e_audit", "p_e2e_events", "#")
    ch.exchange_bind("p_e2e_billing", "p_e2e_events", "order.*")
    ch.exchange_bind("p_e2e_events", "p_e2e_audit")  # a cycle back to the source
    ch.queue_declare("p_e2e_log")
    ch.queue_bind("p_e2e_log", "p_e2e_audit")
    ch.queue_bind("p_e2e_log", "p_e2e_events", "order.paid")  # a second path to one queue
    ch.queue_declare("p_e2e_invoices")
    ch.queue_bind("p_e2e_invoices", "p_e2e_billing", "order.paid")
    ch.confirm_delivery()
    ch.basic_publish("p_e2e_events", "order.paid", b"paid")
    ch.basic_publish("p_e2e_events", "user.created", b"user")
    check([b for _, b in drain(ch, "p_e2e_log")] == ["paid", "user"], "the log got each message once")
    check([b for _, b in drain(ch, "p_e2e_invoices")] == ["paid"], "billing routed the paid order")
    ch.exchange_unbind("p_e2e_audit", "p_e2e_events", "#")
    try:
        # Passed on to billing, which routes it nowhere: no queue at all, so returned.
        ch.basic_publish("p_e2e_events", "order.created", b"lost", mandatory=True)
        check(False, "a message no queue takes is returned")
    except UnroutableError:
        pass
    ch.exchange_delete("p_e2e_billing")
    ch.basic_publish("p_e2e_events", "order.paid", b"paid again")
    check([b for _, b in drain(ch, "p_e2e_log")] == ["paid again"], "the direct binding still routes")
    try:
        ch.exchange_bind("p_e2e_log_x", "p_e2e_events", "#")
        check(False, "binding an unknown exchange fails")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 404, f"404 for an unknown destination, got {e.reply_code}")
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        ch.basic_publish("p_e2e_audit", "", b"direct")
        check(False, "an internal exchange refuses publishers")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 403, f"403 for publishing to an internal exchange, got {e.reply_code}")
    conn.close()
    print("OK exchange-to-exchange bindings", flush=True)


def ready(conn, queue):
    """Ready messages of `queue`, asked on a channel of its own."""
    c = conn.channel()
    n = c.queue_declare(queue, passive=True).method.message_count
    c.close()
    return n


def closed_with(code, what, action):
    try:
        action()
        check(False, what)
    except ChannelClosedByBroker as e:
        check(e.reply_code == code, f"{what}: {code} expected, got {e.reply_code}")


def transactions():
    conn, ch = connect()
    ch.queue_declare("p_tx_in")
    ch.queue_declare("p_tx_out")
    seed = conn.channel()
    seed.confirm_delivery()
    for body in (b"a", b"b"):
        seed.basic_publish("", "p_tx_in", body)
    ch.tx_select()
    ch.basic_publish("", "p_tx_out", b"dropped")
    check(ready(conn, "p_tx_out") == 0, "nothing is visible before the commit")
    ch.tx_rollback()
    ch.tx_commit()
    check(ready(conn, "p_tx_out") == 0, "a rollback drops the publish")
    # Consume, transform, publish and acknowledge in one transaction.
    m, _, body = ch.basic_get("p_tx_in")
    ch.basic_publish("", "p_tx_out", body.upper())
    ch.basic_ack(m.delivery_tag)
    # basic.ack has no reply: the channel error shows at the commit that follows.
    closed_with(
        406,
        "acknowledging a tag twice in one transaction",
        lambda: (ch.basic_ack(m.delivery_tag), ch.tx_commit()),
    )
    ch = conn.channel()
    ch.tx_select()
    m, _, body = ch.basic_get("p_tx_in")
    check(body == b"a" and m.redelivered, "the closed channel rolled back its acknowledgement")
    ch.basic_publish("", "p_tx_out", body.upper())
    ch.basic_ack(m.delivery_tag)
    check(ready(conn, "p_tx_in") == 1 and ready(conn, "p_tx_out") == 0, "held until the commit")
    ch.tx_commit()
    check(ready(conn, "p_tx_out") == 1, "the commit published")
    check(ready(conn, "p_tx_in") == 1, "the commit acknowledged")
    # An acknowledgement rolled back leaves the delivery unacknowledged.
    m, _, body = ch.basic_get("p_tx_in")
    ch.basic_ack(m.delivery_tag)
    ch.tx_rollback()
    ch.close()
    out = [b for _, b in drain(conn.channel(), "p_tx_out")]
    check(out == ["A"], f"one transformed message: {out}")
    left = [b for _, b in drain(conn.channel(), "p_tx_in")]
    check(left == ["b"], f"the rolled back acknowledgement left the message: {left}")
    ch = conn.channel()
    closed_with(406, "commit without tx.select", ch.tx_commit)
    ch = conn.channel()
    ch.tx_select()
    closed_with(406, "confirm mode on a transactional channel", ch.confirm_delivery)
    ch = conn.channel()
    ch.confirm_delivery()
    closed_with(406, "tx mode on a confirming channel", ch.tx_select)
    conn.close()
    print("OK transactions", flush=True)


def stream_arguments():
    conn, ch = connect()
    args = {"x-queue-type": "stream", "x-max-age": "7D", "x-max-length-bytes": 20_000_000,
            "x-stream-max-segment-size-bytes": 1_000_000}
    ch.queue_declare("p_stream_args", durable=True, arguments=args)
    ch.queue_declare("p_stream_args", durable=True, passive=True)
    for bad in ({"x-max-age": "7 days"}, {"x-max-age": "0s"}, {"x-max-length-bytes": -1}):
        ch = conn.channel()
        try:
            ch.queue_declare("p_stream_bad", durable=True, arguments={"x-queue-type": "stream", **bad})
            check(False, f"a bad stream argument is refused: {bad}")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 406, f"406 for {bad}, got {e.reply_code}")
    conn.close()
    print("OK stream arguments", flush=True)


def streams_read_from_offsets():
    conn, ch = connect()
    ch.queue_declare("p_stream", durable=True, arguments={"x-queue-type": "stream"})
    ch.confirm_delivery()
    for i in range(10):
        ch.basic_publish("", "p_stream", f"s{i}".encode(), pika.BasicProperties(delivery_mode=2))
    ch.basic_qos(prefetch_count=4)

    def read(offset, n):
        got = []

        def on_message(c, method, props, body):
            got.append((props.headers["x-stream-offset"], body.decode()))
            c.basic_ack(method.delivery_tag)

        tag = ch.basic_consume("p_stream", on_message, arguments={"x-stream-offset": offset})
        wait_for(conn, got, n)
        ch.basic_cancel(tag)
        return got

    first = read("first", 10)
    check(first == [(i, f"s{i}") for i in range(10)], f"from first, past the prefetch with acks: {first}")
    check(read(6, 4) == [(i, f"s{i}") for i in range(6, 10)], "from offset 6")
    check(read("first", 10) == first, "a stream keeps its messages for every reader")
    try:
        ch.basic_get("p_stream")
        check(False, "basic.get on a stream fails")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 406, f"406 for basic.get on a stream, got {e.reply_code}")
    conn.close()
    print("OK streams read from offsets", flush=True)


def get_purge_and_errors():
    conn, ch = connect()
    ch.queue_declare("p_misc")
    for i in range(5):
        ch.basic_publish("", "p_misc", f"m{i}".encode())
    m, props, body = ch.basic_get("p_misc")
    check(body == b"m0" and m.message_count == 4, f"get-ok with the remaining count: {m}")
    purged = ch.queue_purge("p_misc")
    check(purged.method.message_count == 4, f"purge drops the 4 not delivered: {purged.method}")
    ch.basic_ack(m.delivery_tag)
    try:
        ch.queue_declare("p_missing", passive=True)
        check(False, "a passive declare of a missing queue fails")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 404, f"404 NOT_FOUND, got {e.reply_code}")
    ch = conn.channel()
    try:
        ch.queue_declare("p_misc", durable=True)
        check(False, "an inequivalent redeclare fails")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 406, f"406 PRECONDITION_FAILED, got {e.reply_code}")
    ch = conn.channel()
    try:
        ch.basic_ack(999)
        ch.queue_declare("p_misc", passive=True)
        check(False, "an unknown delivery tag fails")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 406, f"406 for an unknown delivery tag, got {e.reply_code}")
    ch = conn.channel()
    q = ch.queue_declare("p_misc", passive=True)
    check(q.method.message_count == 0, "the connection still works after channel errors")
    conn.close()
    print("OK get, purge and channel errors", flush=True)


confirms_and_returns()
prefetch_and_requeue_order()
dead_letters_and_delivery_limit()
message_ttl_and_expiration()
max_length_drops_the_oldest()
max_length_bytes_drops_the_oldest()
reject_publish_nacks_new_messages()
alternate_exchange_takes_unroutable_messages()
exchange_to_exchange_bindings()
transactions()
stream_arguments()
streams_read_from_offsets()
get_purge_and_errors()
