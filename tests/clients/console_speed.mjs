// Measures the web console in headless Chromium (not part of the test suite; see
// docs/benchmarks.md): the topic list with many topics, and the message browser over a
// partition of a million records (from the end, the start, the middle, a time, and a key
// filter that scans). Each figure is from a click or navigation to the rows on screen, the
// median of five runs. Needs a server without logins.
//
// usage: node console_speed.mjs <http base> <kafka bootstrap> [topics=1000] [records=1000000]
import { chromium } from "playwright-core";
import kafkajs from "kafkajs";

const [base, bootstrap, topicsArg, recordsArg] = process.argv.slice(2);
const TOPICS = Number(topicsArg || 1000);
const RECORDS = Number(recordsArg || 1_000_000);
const RUNS = 5;
const { Kafka, logLevel } = kafkajs;
const kafka = new Kafka({ clientId: "console-speed", brokers: [bootstrap], logLevel: logLevel.NOTHING });

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function post(path, body) {
  const res = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok && res.status !== 409) throw new Error(`${path}: ${res.status} ${await res.text()}`);
}

async function prepare() {
  for (let i = 0; i < TOPICS; i++) await post("/v1/topics", { name: `t-${String(i).padStart(4, "0")}`, partitions: 1 });
  await post("/v1/topics", { name: "big", partitions: 1 });
  const producer = kafka.producer();
  await producer.connect();
  const value = JSON.stringify({ sku: "S-1", qty: 1, note: "x".repeat(60) });
  const batch = 4_000;
  for (let sent = 0; sent < RECORDS; sent += batch) {
    const n = Math.min(batch, RECORDS - sent);
    await producer.send({ topic: "big", acks: -1, messages: Array.from({ length: n }, (_, i) => ({ key: `k-${sent + i}`, value })) });
  }
  await producer.disconnect();
}

async function timed(page, action, ready) {
  const t0 = Date.now();
  await action();
  await page.waitForFunction(ready, null, { timeout: 60_000 });
  return Date.now() - t0;
}

const t0 = Date.now();
await prepare();
console.log(`prepared ${TOPICS} topics and ${RECORDS} records in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
const results = {};
// The baseline of each figure: the same data fetched from the API alone (no page, no
// browser), the median of five runs, in the same run.
async function apiMs(paths) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    for (const p of paths) await (await fetch(base + p)).arrayBuffer();
    runs.push(performance.now() - t0);
  }
  return Math.round(median(runs));
}
const measure = async (name, action, ready, paths) => {
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await timed(page, action, ready));
  const api = await apiMs(paths);
  results[name] = { page_ms: median(runs), api_ms: api };
  console.log(`${name}: median ${median(runs)} ms in the browser (runs ${runs.join(", ")}); API alone ${api} ms`);
};
const rec = (q) => ["/v1/topics", "/v1/topics/big", `/v1/topics/big/partitions/0/records?${q}`];
const rows = (n) => new Function(`return document.querySelectorAll("#records tr").length >= ${n} && /read in/.test(document.querySelector("#summary")?.textContent || "")`);
await measure(`topic list, ${TOPICS + 1} topics (load page)`, async () => { await page.goto("about:blank"); await page.goto(`${base}/#/topics`); },
  new Function(`return document.querySelectorAll("#rows tr").length >= ${TOPICS}`), ["/v1/topics"]);
const browse = (query) => async () => { await page.goto("about:blank"); await page.goto(`${base}/#/browse/big?${query}`); };
await measure("browser, last 50 of 1M", browse("from=end&limit=50"), rows(50), rec(`offset=${RECORDS - 50}&max_records=50`));
await measure("browser, first 50 of 1M", browse("from=start&limit=50"), rows(50), rec("offset=start&max_records=50"));
await measure("browser, 50 from offset 500000", browse("from=offset&offset=500000&limit=50"), rows(50), rec("offset=500000&max_records=50"));
await measure("browser, 500 from offset 900000", browse("from=offset&offset=900000&limit=500"), rows(500), rec("offset=900000&max_records=500"));
await measure("browser, key filter scanning all 1M", browse(`from=start&key=k-${RECORDS - 1}&limit=50`), rows(1), rec(`offset=start&key=k-${RECORDS - 1}&max_records=50&scan_records_max=2000000`));
await browser.close();
console.log(JSON.stringify(results));
