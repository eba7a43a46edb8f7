"""The official KurrentDB Python client (kurrentdbclient), unchanged, against Rivulet's
event store: Append and BatchAppend with expected versions, conflicts, reads, $all with the
client's default (look-ahead) filter, catch-up subscriptions, idempotent retries, deletes
and tombstones, persistent subscriptions (two competing consumers, ack, park, replay, a
maximum of consumers). Exits non-zero on the first failed check.

usage: kurrentdb_py.py <host:port> <run-id> [refused | tls <ca.pem> <user> <password>]
With `refused` it only checks that an anonymous client of a server with logins on is
refused, reading and writing. With `tls` it connects over TLS trusting <ca.pem>, with the
user's credentials, and checks appends, reads and a persistent subscription, and that a
wrong password is refused (this client needs credentials whenever TLS is on).
"""

import sys
import threading
import time
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import (
    AccessDeniedError,
    AlreadyExistsError,
    UnauthenticatedError,
    FailedPreconditionError,
    MaximumSubscriptionsReachedError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def fails(fn, errors, what):
    try:
        fn()
    except errors as e:
        check(True, f"{what} ({type(e).__name__})")
        return e
    except Exception as e:  # noqa: BLE001 - any other error is a failed check
        check(False, f"{what}: raised {type(e).__name__}: {e}")
    check(False, f"{what}: it succeeded")


def refused(client, run):
    fails(
        lambda: client.append_to_stream(f"s-{run}", events=NewEvent(type="X", data=b"{}"), current_version=StreamState.ANY),
        AccessDeniedError,
        "an anonymous append is refused",
    )
    fails(lambda: client.get_stream(f"s-{run}"), AccessDeniedError, "an anonymous read is refused")
    client.close()
    print("all checks passed", flush=True)


def over_tls(address, run, ca, user, password):
    uri = f"kurrentdb://{user}:{password}@{address}?tls=true&tlsCaFile={ca}"
    client = KurrentDBClient(uri=uri)
    stream = f"secure-{run}"
    client.append_to_stream(stream, events=NewEvent(type="Signed", data=b'{"n":1}'), current_version=StreamState.NO_STREAM)
    events = client.get_stream(stream)
    check([e.type for e in events] == ["Signed"], "append and read over TLS with credentials")
    client.create_subscription_to_stream("tls-group", stream)
    sub = client.read_subscription_to_stream("tls-group", stream)
    for event in sub:
        check(event.type == "Signed", "a persistent subscription over TLS")
        sub.ack(event)
        break
    sub.stop()
    client.close()
    wrong = KurrentDBClient(uri=f"kurrentdb://{user}:not-the-password@{address}?tls=true&tlsCaFile={ca}")
    fails(lambda: wrong.get_stream(stream), UnauthenticatedError, "a wrong password is refused")
    wrong.close()
    print("all checks passed", flush=True)


def info_where(client, group, stream, pred, what):
    info = None
    for _ in range(100):
        info = client.get_subscription_info(group, stream)
        if pred(info):
            break
        time.sleep(0.1)
    check(pred(info), f"{what} (parked {info.parked_message_count}, checkpoint {info.last_checkpointed_event_position!r})")


def persistent(client, run):
    stream, group = f"task-{run}", "py-workers"
    client.create_subscription_to_stream(
        group, stream, consumer_strategy="RoundRobin", checkpoint_after=0.1, min_checkpoint_count=1, max_subscriber_count=2
    )
    fails(lambda: client.create_subscription_to_stream(group, stream), AlreadyExistsError, "creating the same group twice")
    consumers = [client.read_subscription_to_stream(group, stream, event_buffer_size=2) for _ in range(2)]
    fails(
        lambda: client.read_subscription_to_stream(group, stream),
        MaximumSubscriptionsReachedError,
        "a third consumer of a group of at most two is refused",
    )
    tasks = [NewEvent(type="Task", data=str(n).encode()) for n in range(6)]
    client.append_to_stream(stream, events=tasks, current_version=StreamState.NO_STREAM)
    handled, by_consumer, lock = {}, [[], []], threading.Lock()

    def work(who):
        sub = consumers[who]
        for event in sub:
            n = int(event.data)
            with lock:
                by_consumer[who].append(n)
            if n == 4 and event.retry_count == 0:
                sub.nack(event, "park")
                outcome = "parked"
            else:
                sub.ack(event)
                outcome = "acked"
            with lock:
                handled[n] = outcome

    threads = [threading.Thread(target=work, args=(who,), daemon=True) for who in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while len(handled) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    for sub in consumers:
        sub.stop()
    check(sorted(handled) == list(range(6)), f"every task handled once ({handled})")
    check(by_consumer[0] and by_consumer[1], f"both consumers got tasks ({by_consumer})")
    info_where(client, group, stream, lambda i: i.parked_message_count == 1, "one parked task in the group's info")
    client.replay_parked_events(group, stream)
    replay = client.read_subscription_to_stream(group, stream)
    for event in replay:
        check(int(event.data) == 4, f"the parked task comes back on replay ({event.data!r})")
        replay.ack(event)
        break
    replay.stop()
    info_where(client, group, stream, lambda i: i.parked_message_count == 0, "nothing parked after the replay")
    listed = client.list_subscriptions_to_stream(stream)
    check([i.group_name for i in listed] == [group], "the group is listed")
    client.delete_subscription(group, stream)
    fails(lambda: client.get_subscription_info(group, stream), NotFoundError, "a deleted group is gone")


def main():
    address, run = sys.argv[1], sys.argv[2]
    if sys.argv[3:4] == ["tls"]:
        return over_tls(address, run, *sys.argv[4:8])
    client = KurrentDBClient(uri=f"kurrentdb://{address}?tls=false")
    if sys.argv[3:] == ["refused"]:
        return refused(client, run)
    stream = f"cart-{run}"

    placed = NewEvent(type="ItemAdded", data=b'{"sku":"pear"}', metadata=b'{"by":"python"}')
    first = client.append_to_stream(stream, events=placed, current_version=StreamState.NO_STREAM)
    check(isinstance(first, int) and first >= 0, f"Append answers a commit position ({first})")
    fails(
        lambda: client.append_to_stream(stream, events=NewEvent(type="X", data=b"{}"), current_version=StreamState.NO_STREAM),
        WrongCurrentVersionError,
        "no_stream on an existing stream is a conflict",
    )
    batch = [NewEvent(type="ItemAdded", data=b'{"sku":"fig"}'), NewEvent(type="Checked", data=b"\x00\x01", content_type="application/octet-stream")]
    second = client.append_to_stream(stream, events=batch, current_version=0)
    check(second > first, "BatchAppend at exact version 0 lands after the first")
    fails(
        lambda: client.append_to_stream(stream, events=[NewEvent(type="X", data=b"{}")], current_version=0),
        WrongCurrentVersionError,
        "BatchAppend at a stale version is a conflict",
    )
    again = client.append_to_stream(stream, events=batch, current_version=0)
    check(again == second, f"a retried batch answers its original position ({again} == {second})")
    check(client.get_current_version(stream) == 2, "the retried batch wrote nothing")

    events = client.get_stream(stream)
    check([e.type for e in events] == ["ItemAdded", "ItemAdded", "Checked"], "read forwards")
    check(events[0].id == placed.id and events[0].metadata == b'{"by":"python"}', "ids and metadata come back")
    check(events[2].data == b"\x00\x01" and events[2].content_type == "application/octet-stream", "binary data")
    check([e.stream_position for e in events] == [0, 1, 2], "stream positions 0..2")
    check(events[0].recorded_at is not None, "recorded_at is set")
    back = client.get_stream(stream, backwards=True, limit=2)
    check([e.stream_position for e in back] == [2, 1], "read backwards, two events")
    fails(lambda: client.get_stream(f"none-{run}"), NotFoundError, "reading a missing stream")

    everything = client.read_all()
    ours = [e for e in everything if e.stream_name == stream]
    check(len(ours) == 3, "$all read with the client's default look-ahead filter holds our events")
    positions = [e.commit_position for e in everything]
    check(positions == sorted(positions) and len(set(positions)) == len(positions), "$all positions grow")

    seen = []
    subscription = client.subscribe_to_stream(stream)

    def append_live():
        client.append_to_stream(stream, events=NewEvent(type="Live", data=b"{}"), current_version=2)

    for event in subscription:
        seen.append(event.stream_position)
        if len(seen) == 3:
            threading.Thread(target=append_live).start()
        if len(seen) == 4:
            break
    subscription.stop()
    check(seen == [0, 1, 2, 3], f"the subscription saw history then the live event ({seen})")

    all_sub = client.subscribe_to_all(filter_include=[f"{stream}"], filter_by_stream_name=True)
    types = []
    for event in all_sub:
        types.append(event.type)
        if len(types) == 4:
            break
    all_sub.stop()
    check(types == ["ItemAdded", "ItemAdded", "Checked", "Live"], f"a filtered $all subscription ({types})")

    fails(lambda: client.delete_stream(stream, current_version=1), WrongCurrentVersionError, "a delete at a stale version")
    client.delete_stream(stream, current_version=3)
    fails(lambda: client.get_stream(stream), NotFoundError, "a deleted stream reads as missing")
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    fails(
        lambda: client.append_to_stream(stream, events=[NewEvent(type="X", data=b"{}")], current_version=StreamState.ANY),
        StreamIsDeletedError,
        "appending to a tombstoned stream",
    )
    single = fails(
        lambda: client.append_to_stream(stream, events=NewEvent(type="X", data=b"{}"), current_version=StreamState.ANY),
        FailedPreconditionError,
        "a single-event append to a tombstoned stream",
    )
    check("is deleted" in str(single), f"the refusal says the stream is deleted ({single})")
    persistent(client, run)
    client.close()
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
