"""The official KurrentDB Python client (kurrentdbclient), unchanged, against Rivulet's
event store: Append and BatchAppend with expected versions, conflicts, reads, $all with the
client's default (look-ahead) filter, catch-up subscriptions, idempotent retries, deletes
and tombstones. Exits non-zero on the first failed check.

usage: kurrentdb_py.py <host:port> <run-id> [refused]
With `refused` it only checks that an anonymous client of a server with logins on is
refused, reading and writing.
"""

import sys
import threading
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import (
    AccessDeniedError,
    FailedPreconditionError,
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


def main():
    address, run = sys.argv[1], sys.argv[2]
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
    client.close()
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
