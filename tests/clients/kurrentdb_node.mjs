// The official KurrentDB Node client (@kurrent/kurrentdb-client), unchanged, against
// Rivulet's event store: appends with every expected-state kind, conflicts, reads both
// ways, $all, catch-up subscriptions across the history/live switch, idempotent retries,
// deletes and tombstones, persistent subscriptions (competing consumers, ack, retry, skip,
// park, replay of parked events). Exits non-zero on the first failed check.
//
// usage: node kurrentdb_node.mjs <host:port> <run-id> [tls <ca.pem> <user> <password>]
// With `tls` it only connects over TLS with the user's credentials, appends and reads back.

import {
  KurrentDBClient, jsonEvent, binaryEvent, NO_STREAM, STREAM_EXISTS, ANY, START, END,
  FORWARDS, BACKWARDS, streamNameFilter, excludeSystemEvents,
  persistentSubscriptionToStreamSettingsFromDefaults, persistentSubscriptionToAllSettingsFromDefaults,
  ROUND_ROBIN, PARK, RETRY, SKIP,
  WrongExpectedVersionError, StreamNotFoundError, StreamDeletedError,
  PersistentSubscriptionExistsError, PersistentSubscriptionDoesNotExistError,
} from "@kurrent/kurrentdb-client";
import { randomUUID } from "node:crypto";

const [address, run, mode, ca, user, password] = process.argv.slice(2);
if (mode === "tls") {
  const secure = KurrentDBClient.connectionString`kurrentdb://${user}:${password}@${address}?tls=true&tlsCAFile=${ca}`;
  const stream = `secure-node-${run}`;
  await secure.appendToStream(stream, jsonEvent({ type: "Signed", data: { n: 1 } }), { streamState: NO_STREAM });
  const back = [];
  for await (const { event } of secure.readStream(stream)) back.push(event.type);
  if (back.join() !== "Signed") { console.error(`FAILED: read back over TLS: ${back}`); process.exit(1); }
  console.log("ok: append and read over TLS with credentials");
  await secure.dispose();
  console.log("all checks passed");
  process.exit(0);
}
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

// Persistent subscriptions: a group with two competing consumers; ack, retry, skip, park,
// replay of the parked event, statistics, a second group on $all with a filter.
const work = `work-${run}`;
const group = "workers";
await client.createPersistentSubscriptionToStream(work, group, persistentSubscriptionToStreamSettingsFromDefaults({
  startFrom: START, maxRetryCount: 3, checkPointAfter: 100, checkPointLowerBound: 1, consumerStrategyName: ROUND_ROBIN,
}));
await fails(client.createPersistentSubscriptionToStream(work, group, persistentSubscriptionToStreamSettingsFromDefaults()),
  PersistentSubscriptionExistsError, "creating the same group twice");
const consumers = [0, 1].map(() => client.subscribeToPersistentSubscriptionToStream(work, group, { bufferSize: 4 }));
await Promise.all(consumers.map((c) => new Promise((resolve) => c.once("confirmation", resolve))));
check(consumers[0].id === `${work}::${group}`, `the confirmation names <stream>::<group> (${consumers[0].id})`);
await client.appendToStream(work, [0, 1, 2, 3, 4, 5].map((n) => jsonEvent({ type: "Job", data: { n } })), { streamState: NO_STREAM });
const handled = new Map(); // n -> how it ended
const deliveries = [[], []];
let retriedCount = -1;
let finish;
const done = new Promise((resolve) => { finish = resolve; });
consumers.forEach(async (c, who) => {
  try {
    for await (const e of c) {
      const n = e.event.data.n;
      deliveries[who].push(n);
      if (n === 1) { await c.nack(PARK, "poison", e); handled.set(n, "parked"); }
      else if (n === 2 && e.retryCount === 0) { await c.nack(RETRY, "try again", e); }
      else if (n === 3) { await c.nack(SKIP, "not mine", e); handled.set(n, "skipped"); }
      else { if (n === 2) retriedCount = e.retryCount; await c.ack(e); handled.set(n, "acked"); }
      if (handled.size === 6) finish();
    }
  } catch (e) {
    if (handled.size < 6) console.error(`consumer ${who}: ${e.message}`);
  }
});
await Promise.race([done, new Promise((r) => setTimeout(r, 15000))]);
check(handled.size === 6, `every job handled once (${[...handled].join(" ")})`);
check(retriedCount === 1, `the retried job came back with retryCount 1 (${retriedCount})`);
check(deliveries[0].length > 0 && deliveries[1].length > 0, `both consumers got jobs (${deliveries[0]} | ${deliveries[1]})`);
async function infoWhere(pred, what) {
  let info;
  for (let i = 0; i < 100; i++) {
    info = await client.getPersistentSubscriptionToStreamInfo(work, group);
    if (pred(info)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  check(pred(info), `${what} (parked ${info.stats.parkedMessageCount}, checkpoint ${info.stats.lastCheckpointedEventRevision}, strategy ${info.settings.consumerStrategyName})`);
  return info;
}
// Checked while the consumers are still subscribed: an ack written just before an
// unsubscribe can be cut off with the stream, leaving that job to be delivered again.
await infoWhere((i) => i.stats.parkedMessageCount === 1n && i.stats.lastCheckpointedEventRevision === 5n, "info: one parked job, checkpoint at the last job");
await Promise.all(consumers.map((c) => c.unsubscribe()));
const replayer = client.subscribeToPersistentSubscriptionToStream(work, group);
await new Promise((resolve) => replayer.once("confirmation", resolve));
await client.replayParkedMessagesToStream(work, group);
for await (const e of replayer) {
  check(e.event.data.n === 1, `the parked job comes back on replay (${e.event.data.n})`);
  await replayer.ack(e);
  break;
}
await replayer.unsubscribe();
await infoWhere((i) => i.stats.parkedMessageCount === 0n, "info: nothing parked after the replay");
const listed = await client.listPersistentSubscriptionsToStream(work);
check(listed.length === 1 && listed[0].groupName === group, "the group is listed");
await client.deletePersistentSubscriptionToStream(work, group);
await fails(client.getPersistentSubscriptionToStreamInfo(work, group), PersistentSubscriptionDoesNotExistError, "a deleted group is gone");

await client.createPersistentSubscriptionToAll("all-workers", persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }),
  { filter: streamNameFilter({ prefixes: [work] }) });
const allGroup = client.subscribeToPersistentSubscriptionToAll("all-workers");
const allJobs = [];
for await (const e of allGroup) {
  allJobs.push(e.event.data.n);
  await allGroup.ack(e);
  if (allJobs.length === 6) break;
}
await allGroup.unsubscribe();
check(allJobs.join() === "0,1,2,3,4,5", `a filtered $all group delivers the stream's jobs in order (${allJobs})`);
await client.deletePersistentSubscriptionToAll("all-workers");
// Left for the operator views: a group with no consumers, six jobs behind.
await client.createPersistentSubscriptionToStream(work, "idle", persistentSubscriptionToStreamSettingsFromDefaults({ startFrom: START }));

await client.dispose();
console.log("all checks passed");
