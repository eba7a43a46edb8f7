// The official KurrentDB Node client (@kurrent/kurrentdb-client), unchanged, against
// Rivulet's event store: appends with every expected-state kind, conflicts, reads both
// ways, $all, catch-up subscriptions across the history/live switch, idempotent retries,
// deletes and tombstones. Exits non-zero on the first failed check.
//
// usage: node kurrentdb_node.mjs <host:port> <run-id>

import {
  KurrentDBClient, jsonEvent, binaryEvent, NO_STREAM, STREAM_EXISTS, ANY, START, END,
  FORWARDS, BACKWARDS, streamNameFilter, excludeSystemEvents,
  persistentSubscriptionToStreamSettingsFromDefaults,
  WrongExpectedVersionError, StreamNotFoundError, StreamDeletedError,
} from "@kurrent/kurrentdb-client";
import { randomUUID } from "node:crypto";

const [address, run] = process.argv.slice(2);
const client = KurrentDBClient.connectionString`kurrentdb://${address}?tls=false`;
const order = `order-${run}`;

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function fails(promise, type, what) {
  try {
    await promise;
  } catch (e) {
    check(e instanceof type, `${what} (${e.constructor.name}: ${e.message})`);
    return e;
  }
  check(false, `${what}: it succeeded`);
}

async function collect(iterable) {
  const out = [];
  for await (const resolved of iterable) out.push(resolved.event);
  return out;
}

const placed = jsonEvent({ id: randomUUID(), type: "OrderPlaced", data: { sku: "apple", qty: 2 }, metadata: { by: "node" } });
const first = await client.appendToStream(order, placed, { streamState: NO_STREAM });
check(first.success && first.nextExpectedRevision === 0n, "append with no_stream starts at revision 0");
check(first.position && first.position.commit >= 0n, "the append answers its position");

const conflict = await fails(
  client.appendToStream(order, jsonEvent({ type: "OrderPlaced", data: {} }), { streamState: NO_STREAM }),
  WrongExpectedVersionError, "no_stream on an existing stream is a conflict");
check(conflict.actualState === 0n, `the conflict names the actual revision (${conflict.actualState})`);

const paid = await client.appendToStream(order, jsonEvent({ type: "OrderPaid", data: { amount: 7 } }), { streamState: 0n });
check(paid.nextExpectedRevision === 1n, "append at exact revision 0 gives revision 1");
await fails(client.appendToStream(order, jsonEvent({ type: "X", data: {} }), { streamState: 0n }),
  WrongExpectedVersionError, "a stale exact revision is a conflict");
const exists = await client.appendToStream(order, [
  jsonEvent({ type: "OrderPacked", data: { box: 1 } }),
  binaryEvent({ type: "Label", data: Buffer.from([0, 1, 2, 255]) }),
], { streamState: STREAM_EXISTS });
check(exists.nextExpectedRevision === 3n, "two events with stream_exists end at revision 3");
await fails(client.appendToStream(`missing-${run}`, jsonEvent({ type: "X", data: {} }), { streamState: STREAM_EXISTS }),
  WrongExpectedVersionError, "stream_exists on a missing stream is a conflict");

// The same event (same id) appended again is answered with the original result.
const retried = await client.appendToStream(order, placed, { streamState: ANY });
check(retried.nextExpectedRevision === 0n, `a retried append answers its original revision (${retried.nextExpectedRevision})`);

const forwards = await collect(client.readStream(order, { direction: FORWARDS, fromRevision: START }));
check(forwards.map((e) => e.type).join() === "OrderPlaced,OrderPaid,OrderPacked,Label", `read forwards: ${forwards.map((e) => e.type)}`);
check(forwards[0].id === placed.id && forwards[0].data.sku === "apple" && forwards[0].metadata.by === "node", "ids, data and metadata come back");
check(forwards.every((e, i) => e.revision === BigInt(i)), "revisions 0..3, no duplicate of the retried append");
check(Buffer.from(forwards[3].data).equals(Buffer.from([0, 1, 2, 255])) && !forwards[3].isJson, "binary data comes back as bytes");
const created = forwards[0].created;
check(Math.abs(new Date(created).getTime() - Date.now()) < 60_000, `created is now (${created})`);
const backwards = await collect(client.readStream(order, { direction: BACKWARDS, fromRevision: END, maxCount: 2 }));
check(backwards.map((e) => e.revision).join() === "3,2", "read backwards from the end, two events");
await fails(collect(client.readStream(`nothing-${run}`)), StreamNotFoundError, "reading a missing stream");

const all = await collect(client.readAll({ direction: FORWARDS, fromPosition: START, maxCount: 100000 }));
const ours = all.filter((e) => e.streamId === order);
check(ours.length === 4, `$all holds the stream's four events (${ours.length})`);
check(all.every((e, i) => i === 0 || e.position.commit > all[i - 1].position.commit), "$all positions grow");
const newest = await collect(client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 1 }));
check(newest.length === 1 && newest[0].id === forwards[3].id, "$all backwards starts at the newest event");

// Catch-up subscription: history, then live, no gap and no duplicate at the switch.
const subscription = client.subscribeToStream(order, { fromRevision: START });
const seen = [];
let caughtUp = false;
subscription.on("caughtUp", () => { caughtUp = true; });
let liveSent = false;
for await (const resolved of subscription) {
  seen.push(resolved.event.revision);
  if (seen.length === 4 && !liveSent) {
    liveSent = true;
    await client.appendToStream(order, jsonEvent({ type: "OrderShipped", data: {} }), { streamState: 3n });
  }
  if (seen.length === 5) break;
}
await subscription.unsubscribe();
check(seen.join() === "0,1,2,3,4", `the subscription saw history then the live event once (${seen})`);
check(caughtUp, "the subscription said it caught up");

const allSub = client.subscribeToAll({ fromPosition: START, filter: streamNameFilter({ prefixes: [order] }) });
const allSeen = [];
for await (const resolved of allSub) {
  allSeen.push(resolved.event.type);
  if (allSeen.length === 5) break;
}
await allSub.unsubscribe();
check(allSeen.join() === "OrderPlaced,OrderPaid,OrderPacked,Label,OrderShipped", `a filtered $all subscription: ${allSeen}`);
const exclude = await collect(client.readAll({ fromPosition: START, filter: excludeSystemEvents(), maxCount: 100000 }));
check(exclude.length === all.length + 1, "a regex filter with look-ahead excludes nothing of ours");

// Two writers at the same expected revision: exactly one wins.
const race = await Promise.allSettled([5, 6].map((n) =>
  client.appendToStream(order, jsonEvent({ type: `Race${n}`, data: {} }), { streamState: 4n })));
check(race.filter((r) => r.status === "fulfilled").length === 1, "one of two racing appends wins");
check(race.some((r) => r.status === "rejected" && r.reason instanceof WrongExpectedVersionError), "the other is a conflict");

// Soft delete: the stream reads as missing; writing again continues its revisions.
await fails(client.deleteStream(order, { expectedRevision: 1n }), WrongExpectedVersionError, "a delete at a stale revision");
await client.deleteStream(order, { expectedRevision: 5n });
await fails(collect(client.readStream(order)), StreamNotFoundError, "a deleted stream reads as missing");
const again = await client.appendToStream(order, jsonEvent({ type: "Reopened", data: {} }), { streamState: NO_STREAM });
check(again.nextExpectedRevision === 6n, `revisions continue after a delete (${again.nextExpectedRevision})`);
const reopened = await collect(client.readStream(order));
check(reopened.length === 1 && reopened[0].type === "Reopened", "only the new event is readable");

// Tombstone: gone for good.
await client.tombstoneStream(order);
await fails(client.appendToStream(order, jsonEvent({ type: "X", data: {} })), StreamDeletedError, "appending to a tombstoned stream");
await fails(collect(client.readStream(order)), StreamDeletedError, "reading a tombstoned stream");

// Persistent subscriptions are not served yet: the call fails at once, it does not hang.
const started = Date.now();
let refused = null;
try {
  await client.createPersistentSubscriptionToStream(`group-${run}`, "workers", persistentSubscriptionToStreamSettingsFromDefaults());
} catch (e) {
  refused = e;
}
check(refused !== null && Date.now() - started < 5000, `persistent subscriptions are refused at once (${refused && refused.constructor.name}: ${refused && refused.message})`);

await client.dispose();
console.log("all checks passed");
