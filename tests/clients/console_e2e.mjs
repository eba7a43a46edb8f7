// Drives Rivulet's web console in a real headless Chromium against a running `rivulet serve`
// with logins on: log in, create a topic, edit a config, produce from the form, find the
// record by key, watch a group's lag fall to zero while a consumer runs, reset offsets after
// a dry run, redrive a dead letter and see it consumed, purge a queue, abort a transaction,
// read an event store stream.
// Prints one `OK ...` line per check; exits non-zero on the first failure.
//
// usage: node console_e2e.mjs <http base> <kafka bootstrap> <amqp url> <user> <password> [screenshot dir]
import { gzipSync } from "node:zlib";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import kafkajs from "kafkajs";
import amqp from "amqplib";

const [base, bootstrap, amqpUrl, user, password, shots] = process.argv.slice(2);
const { Kafka, logLevel } = kafkajs;
const kafka = new Kafka({
  clientId: "console-e2e",
  brokers: [bootstrap],
  logLevel: logLevel.NOTHING,
  sasl: { mechanism: "scram-sha-256", username: user, password },
});
const WAIT_MS = 20_000;

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}
async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: false });
}
const text = (page, sel) => page.locator(sel).first().innerText();

async function pageWeight() {
  let raw = 0; let gz = 0;
  const dir = new URL("../../crates/rivulet-http/console/", import.meta.url);
  const files = readdirSync(dir).filter((f) => f !== "index.html");
  for (const path of ["/", ...files.map((f) => `/console/${f}`)]) {
    const res = await fetch(base + path);
    check(res.ok, `${path} is served without a login`);
    const body = Buffer.from(await res.arrayBuffer());
    const file = path === "/" ? "index.html" : path.slice("/console/".length);
    check(body.equals(readFileSync(new URL(file, dir))), `${path} is the file in the source tree`);
    raw += body.length; gz += gzipSync(body, { level: 9 }).length;
  }
  check(gz < 300 * 1024, `console under 300 KB compressed (${gz})`);
  console.log(`OK weight ${raw} bytes, ${gz} gzip, in ${files.length + 1} files`);
}

async function login(page) {
  await page.goto(`${base}/#/`);
  await page.locator("#login").waitFor({ timeout: WAIT_MS });
  await page.fill("#login input[name=user]", user);
  await page.fill("#login input[name=password]", "wrong-password");
  await page.click("#login button");
  await page.locator(".login .error").waitFor({ timeout: WAIT_MS });
  await page.fill("#login input[name=password]", password);
  await page.click("#login button");
  await page.locator("h1", { hasText: "Overview" }).waitFor({ timeout: WAIT_MS });
  console.log("OK login");
}

async function overview(page, producer) {
  await producer.send({ topic: "warmup", messages: [{ value: "x" }] });
  const until = Date.now() + 4_000;
  while (Date.now() < until) {
    await producer.send({ topic: "warmup", messages: Array.from({ length: 50 }, (_, i) => ({ key: `w${i}`, value: JSON.stringify({ n: i }) })) });
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.waitForFunction(() => {
    const v = document.querySelector("#cards .card .value");
    return v && /^[1-9]/.test(v.textContent);
  }, null, { timeout: WAIT_MS });
  check((await page.locator("#charts svg").count()) === 3, "three live charts");
  check((await text(page, "#listeners")).includes("kafka"), "listeners listed");
  await shot(page, "overview");
  await page.emulateMedia({ colorScheme: "dark" });
  await shot(page, "overview-dark");
  await page.emulateMedia({ colorScheme: "light" });
  console.log("OK overview shows live produce rate");
}

async function createTopic(page) {
  await page.click("nav >> text=Topics");
  await page.fill("#create input[name=name]", "orders");
  await page.fill("#create input[name=partitions]", "3");
  await page.click("#create button");
  await page.locator("h1", { hasText: "Topic orders" }).waitFor({ timeout: WAIT_MS });
  check((await page.locator("main table").first().locator("tbody tr").count()) === 3, "three partitions shown");
  await page.selectOption("#set select[name=key]", "retention.ms");
  await page.fill("#set input[name=value]", "86400000");
  await page.click("#set button");
  await page.locator("tr", { hasText: "retention.ms" }).locator("text=override").waitFor({ timeout: WAIT_MS });
  check((await text(page, "tr:has-text('retention.ms')")).includes("86400000"), "retention.ms override shown");
  await shot(page, "topic");
  await page.click("nav >> text=Topics");
  await page.locator("#rows tr", { hasText: "orders" }).waitFor({ timeout: WAIT_MS });
  await shot(page, "topics");
  console.log("OK topic created and config edited");
}

async function browse(page, producer) {
  await producer.send({ topic: "orders", messages: Array.from({ length: 300 }, (_, i) => ({ key: `k-${i}`, value: JSON.stringify({ sku: `S-${i % 7}`, qty: i % 5 }) })) });
  await page.goto(`${base}/#/browse/orders`);
  await page.fill("#produce input[name=key]", "order-42");
  await page.fill("#produce textarea[name=value]", '{"specversion":"1.0","type":"shop.order.placed","source":"/console","id":"e-42","data":{"sku":"A-1","qty":2}}');
  await page.fill("#produce textarea[name=headers]", '{"origin": "console"}');
  await page.click("#produce button");
  await page.locator("#toast", { hasText: "Produced to partition" }).waitFor({ timeout: WAIT_MS });
  await page.fill("#query input[name=key]", "order-42");
  await page.click("#query button.primary");
  await page.waitForFunction(() => /scanned/.test(document.querySelector("#summary")?.textContent || ""), null, { timeout: WAIT_MS });
  const rows = page.locator("#records tr");
  check((await rows.count()) === 1, "exactly one record with key order-42");
  check((await rows.first().innerText()).includes("order-42"), "the row shows the key");
  await rows.first().focus();
  await page.keyboard.press("Enter");
  await page.locator("#detail", { hasText: "CloudEvent" }).waitFor({ timeout: WAIT_MS });
  check((await text(page, "#detail")).includes('"sku": "A-1"'), "value pretty-printed");
  await shot(page, "browse");
  await page.fill("#query input[name=key]", "");
  await page.fill("#query input[name=field]", "data.sku=A-1");
  await page.click("#query button.primary");
  await page.waitForFunction(() => /1 record\(s\), [\d,]+ scanned/.test(document.querySelector("#summary")?.textContent || ""), null, { timeout: WAIT_MS });
  console.log("OK produced from the form and found by key and by JSON field");
  await page.click("#tail");
  await page.waitForTimeout(500);
  await producer.send({ topic: "orders", messages: [{ key: "tailed", value: JSON.stringify({ live: true }) }] });
  await page.locator("#records tr", { hasText: "tailed" }).waitFor({ timeout: WAIT_MS });
  await page.click("#tail");
  console.log("OK live tail shows a new record");
  // 300 from kafkajs, one from the form, one tailed.
  return 302;
}

async function consumeUntil(consumer, wanted, seen) {
  const until = Date.now() + WAIT_MS;
  while (Date.now() < until && !wanted(seen)) await new Promise((r) => setTimeout(r, 100));
  check(wanted(seen), "consumer received what was expected");
}

async function groupLagAndReset(page, total) {
  const seen = [];
  const first = kafka.consumer({ groupId: "billing" });
  await first.connect();
  await first.subscribe({ topic: "orders", fromBeginning: true });
  await first.run({ eachMessage: async ({ message }) => { seen.push(message.key?.toString()); } });
  await consumeUntil(first, (s) => s.length >= total, seen);
  await first.disconnect();
  await page.goto(`${base}/#/groups/billing`);
  await page.locator("h1", { hasText: "Group billing" }).waitFor({ timeout: WAIT_MS });
  check((await text(page, "#total-lag")) === "0", "caught-up group shows lag 0");
  await page.selectOption("#reset select[name=to]", "start");
  await page.click("#reset button[value=preview]");
  await page.locator("#preview", { hasText: "Dry run" }).waitFor({ timeout: WAIT_MS });
  const preview = await page.locator("#preview tbody tr").allInnerTexts();
  check(preview.length === 3 && preview.every((r) => r.trim().endsWith("0")), `dry run moves every partition to 0: ${preview}`);
  await shot(page, "group-reset-preview");
  await page.click("#apply");
  await page.click("#confirm-ok");
  await page.locator("#toast", { hasText: "reset" }).waitFor({ timeout: WAIT_MS });
  await page.waitForFunction((n) => document.querySelector("#total-lag")?.textContent === n.toLocaleString("en-US"), total, { timeout: WAIT_MS });
  console.log(`OK offsets reset after a dry run (lag ${total})`);
  const received = [];
  const second = kafka.consumer({ groupId: "billing" });
  await second.connect();
  await second.subscribe({ topic: "orders", fromBeginning: true });
  await second.run({ eachMessage: async ({ message, partition }) => { received.push({ key: message.key?.toString(), partition }); await new Promise((r) => setTimeout(r, 5)); } });
  await page.waitForFunction(() => document.querySelector("#member-count")?.textContent === "1", null, { timeout: WAIT_MS });
  await page.waitForFunction(() => document.querySelector("#total-lag")?.textContent === "0" && document.querySelector("#lag-chart svg"), null, { timeout: 60_000 });
  check(received.length >= total, `consumer read the ${total} records again (${received.length})`);
  await shot(page, "group");
  console.log("OK lag fell to zero live while the consumer ran");
  return { consumer: second, received };
}

async function deadLetter(page, producer, admin, running) {
  await admin.createTopics({ topics: [{ topic: "orders.dlq", numPartitions: 1 }] });
  await producer.send({
    topic: "orders.dlq",
    messages: [{
      key: "order-dead", value: JSON.stringify({ sku: "Z-9", qty: 1 }),
      headers: { "dlq.original.topic": "orders", "dlq.original.partition": "1", "dlq.original.offset": "7", "dlq.error": "payment service timed out", "dlq.attempts": "5", "dlq.group": "billing" },
    }],
  });
  await page.goto(`${base}/#/dead-letters`);
  await page.click("text=orders.dlq");
  await page.locator("td", { hasText: "payment service timed out" }).waitFor({ timeout: WAIT_MS });
  check((await text(page, "main p")).includes("1 not redriven"), "one letter pending");
  await shot(page, "dead-letters");
  await page.click("button[data-one='0']");
  await page.locator("#toast", { hasText: "1 dead letter(s) redriven" }).waitFor({ timeout: WAIT_MS });
  await page.locator("main p", { hasText: "0 not redriven" }).waitFor({ timeout: WAIT_MS });
  check((await page.locator("tr", { hasText: "order-dead" }).innerText()).includes("redriven"), "the row is marked redriven");
  await consumeUntil(running.consumer, () => running.received.some((r) => r.key === "order-dead"), running.received);
  const back = running.received.find((r) => r.key === "order-dead");
  check(back.partition === 1, `redriven to its original partition (${back.partition})`);
  console.log("OK dead letter redriven and consumed");
}

async function queues(page) {
  const url = new URL(amqpUrl);
  url.username = user; url.password = password;
  const conn = await amqp.connect(url.toString());
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue("emails", { durable: true });
  await ch.bindQueue("emails", "amq.direct", "mail.send");
  const publish = async (n) => {
    for (let i = 0; i < n; i++) ch.sendToQueue("emails", Buffer.from(`mail ${i}`), { persistent: true });
    await ch.waitForConfirms();
  };
  await publish(3);
  const ready = (n) => page.waitForFunction((want) => document.querySelector("tr[data-queue='emails']")?.children[1].textContent === want, String(n), { timeout: WAIT_MS });
  await page.goto(`${base}/#/queues`);
  await ready(3);
  await page.click("button[data-bindings='amq.direct']");
  await page.locator("#bindings td", { hasText: "mail.send" }).waitFor({ timeout: WAIT_MS });
  await shot(page, "queues");
  await publish(2);
  await ready(5);
  await page.click("button[data-purge='emails']");
  check(await page.locator("#confirm-ok").isDisabled(), "purge needs the queue's name typed");
  await page.fill("#confirm-typed", "emails");
  await page.click("#confirm-ok");
  await page.locator("#toast", { hasText: "5 message(s) purged" }).waitFor({ timeout: WAIT_MS });
  await ready(0);
  await ch.close();
  await conn.close();
  console.log("OK queue depth follows live, purged after typed confirmation");
}

// The event store page: a stream appended over HTTP is listed, its newest event first.
async function eventStore(page) {
  const headers = { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`, "Content-Type": "application/json" };
  const body = { expected: "no_stream", events: [{ type: "ItemAdded", data: { sku: "pear" } }, { type: "CheckedOut", data: { total: 3 } }] };
  const res = await fetch(`${base}/v1/streams/cart-console`, { method: "POST", headers, body: JSON.stringify(body) });
  check(res.ok, `append over HTTP (${res.status})`);
  await page.goto(`${base}/#/streams`);
  await page.locator("#streams tr", { hasText: "cart-console" }).waitFor({ timeout: WAIT_MS });
  await page.locator("#subscriptions").waitFor({ timeout: WAIT_MS });
  await page.click("#streams a[href='#/streams/cart-console']");
  await page.locator("#events tr", { hasText: "CheckedOut" }).waitFor({ timeout: WAIT_MS });
  const newest = await text(page, "#events tbody tr td:nth-child(2)");
  check(newest === "CheckedOut", `the newest event first (${newest})`);
  check((await page.locator("#events tbody tr").count()) === 2, "both events listed");
  await shot(page, "streams");
  console.log("OK event store stream listed with its events");
}

// The jobs page: a job instance's status record (as rivulet-stream writes it to
// rivulet.jobs) is listed with its figures; its key lookup reports that no instance
// answers queries.
async function jobs(page, producer) {
  const status = {
    job: "console-job", instance: "0", state: "running", inputs: ["orders"], output: "order-counts",
    tables: [], late_topic: "console-job.late", changelog_topic: "console-job-changelog", repartition_topic: null,
    windows: "Tumbling { size_ms: 60000 }", lateness_ms: 0, out_of_orderness_ms: 1000, idle_timeout_ms: 5000,
    checkpoint_interval_ms: 100, guarantee: "exactly_once", records_in: 1234, results_out: 56, late: 7,
    dead_lettered: 0, checkpoints: 89, checkpoint_failures: 0, checkpoint_last_ms: 12, state_entries: 3,
    watermark_ms: Date.now() - 2000, tasks: 3, updated_ms: Date.now(), query_address: null,
  };
  await producer.send({ topic: "rivulet.jobs", messages: [{ key: "console-job/0", value: JSON.stringify(status) }] });
  await page.goto(`${base}/#/jobs`);
  await page.locator("#jobs tr[data-job='console-job']").waitFor({ timeout: WAIT_MS });
  const records = await text(page, "#jobs tr[data-job='console-job'] td:nth-child(4)");
  check(records === "1,234", `records in shown (${records})`);
  await page.click("#jobs a[href='#/jobs/console-job']");
  await page.locator("#instances tr", { hasText: "running" }).waitFor({ timeout: WAIT_MS });
  await page.fill("#key-query input[name=key]", "apple");
  await page.click("#key-query button");
  await page.locator("#key-state .error", { hasText: "answers queries" }).waitFor({ timeout: WAIT_MS });
  await shot(page, "jobs");
  console.log("OK job listed with its instance and figures");
}

// A user who may only describe topics named orders*: the list shows only those, and a
// delete is refused with the broker's message while the topic stays.
async function permissions(page) {
  const auth = { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`, "Content-Type": "application/json" };
  let res = await fetch(`${base}/v1/users/viewer`, { method: "PUT", headers: auth, body: JSON.stringify({ password: "viewer-password-1" }) });
  check(res.ok, `user created (${res.status})`);
  res = await fetch(`${base}/v1/acls`, { method: "POST", headers: auth, body: JSON.stringify({ resource_type: "topic", resource_name: "orders", pattern_type: "prefixed", principal: "User:viewer", operation: "describe" }) });
  check(res.ok, `ACL created (${res.status})`);
  await page.click("#logout");
  await page.locator("#login").waitFor({ timeout: WAIT_MS });
  await page.fill("#login input[name=user]", "viewer");
  await page.fill("#login input[name=password]", "viewer-password-1");
  await page.click("#login button");
  await page.locator("h1", { hasText: "Overview" }).waitFor({ timeout: WAIT_MS });
  await page.goto(`${base}/#/topics`);
  await page.locator("#rows tr").first().waitFor({ timeout: WAIT_MS });
  const names = await page.locator("#rows tr td:first-child").allInnerTexts();
  check(names.length === 2 && names.every((n) => n.startsWith("orders")), `viewer sees only orders*: ${names}`);
  await page.goto(`${base}/#/topics/orders`);
  await page.click("#delete");
  await page.fill("#confirm-typed", "orders");
  await page.click("#confirm-ok");
  await page.locator("#toast div.bad", { hasText: "not authorized" }).waitFor({ timeout: WAIT_MS });
  res = await fetch(`${base}/v1/topics/orders`, { headers: auth });
  check(res.ok, "the topic is still there");
  console.log("OK a restricted user sees only what it may describe and is refused a delete");
}

async function transactions(page) {
  const producer = kafka.producer({ transactionalId: "console-txn", maxInFlightRequests: 1, idempotent: true });
  await producer.connect();
  const txn = await producer.transaction();
  await txn.send({ topic: "orders", messages: [{ key: "in-txn", value: "uncommitted" }] });
  await page.goto(`${base}/#/transactions`);
  await page.locator("tr", { hasText: "console-txn" }).locator("button").waitFor({ timeout: WAIT_MS });
  await shot(page, "transactions");
  await page.click("button[data-abort='console-txn']");
  await page.click("#confirm-ok");
  await page.locator("#toast", { hasText: "Transaction aborted" }).waitFor({ timeout: WAIT_MS });
  await page.locator("tr", { hasText: "console-txn" }).waitFor({ timeout: WAIT_MS });
  check((await page.locator("tr", { hasText: "console-txn" }).locator("button").count()) === 0, "no open transaction left to abort");
  await producer.disconnect().catch(() => null);
  console.log("OK open transaction aborted");
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
let running = null;
const producer = kafka.producer({ allowAutoTopicCreation: true });
const admin = kafka.admin();
try {
  await pageWeight();
  const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text()); });
  await producer.connect();
  await admin.connect();
  await login(page);
  await overview(page, producer);
  await createTopic(page);
  const total = await browse(page, producer);
  running = await groupLagAndReset(page, total);
  await deadLetter(page, producer, admin, running);
  await queues(page);
  await transactions(page);
  await eventStore(page);
  await jobs(page, producer);
  await permissions(page);
  check(errors.length === 0, `no script errors: ${errors.join(" | ")}`);
  console.log("OK no script errors");
} finally {
  if (running) await running.consumer.disconnect().catch(() => null);
  await producer.disconnect().catch(() => null);
  await admin.disconnect().catch(() => null);
  await browser.close();
}
