// The message browser: reads, filters, decoded records, produce form, live tail.

import { api, get, events } from "./api.js";
import { enc, num, time } from "./format.js";
import { h, render } from "./html.js";
import { live } from "./live.js";
import { attempt, toast } from "./notify.js";

const SCAN_RECORDS_MAX = 2000000; // records a filtered read looks at per partition

function decode(r) {
  if (r.value_base64 != null) {
    const bin = atob(r.value_base64);
    const hex = Array.from(bin, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join(" ");
    return { kind: "binary", text: `hex: ${hex}\nbase64: ${r.value_base64}` };
  }
  if (r.value == null) return { kind: "tombstone", text: "(null: a tombstone)" };
  try {
    const v = JSON.parse(r.value);
    if (v && typeof v === "object" && v.specversion && v.type && v.id) return { kind: "cloudevent", json: v, text: JSON.stringify(v, null, 2) };
    if (r.headers?.ce_specversion) return { kind: "cloudevent", json: v, text: JSON.stringify(v, null, 2) };
    return { kind: "json", json: v, text: JSON.stringify(v, null, 2) };
  } catch { return { kind: "text", text: r.value }; }
}
function recordDetail(r) {
  const d = decode(r);
  const ce = d.kind === "cloudevent" ? (d.json.specversion ? d.json : Object.fromEntries(Object.entries(r.headers).filter(([k]) => k.startsWith("ce_")).map(([k, v]) => [k.slice(3), v]))) : null;
  return h`<div class="card">${ce ? h`<p><span class="pill">CloudEvent</span> <b>${ce.type}</b> from <code>${ce.source}</code> id <code>${ce.id}</code>${ce.subject ? h` subject <code>${ce.subject}</code>` : ""}</p>` : ""}
    <dl class="kv"><dt>Partition / offset</dt><dd>${r.partition} / ${r.offset}</dd><dt>Timestamp</dt><dd>${time(r.timestamp)}</dd>
    <dt>Key</dt><dd><code>${r.key ?? (r.key_base64 ? `base64:${r.key_base64}` : "(null)")}</code></dd><dt>Value</dt><dd>${d.kind}</dd></dl>
    <pre>${d.text}</pre>${Object.keys(r.headers).length ? h`<b>Headers</b><pre>${JSON.stringify(r.headers, null, 2)}</pre>` : ""}</div>`;
}
export function preview(r) {
  if (r.value_base64 != null) return `(binary, ${Math.floor((r.value_base64.length * 3) / 4)} bytes)`;
  return r.value == null ? "(null)" : r.value.slice(0, 200);
}

export async function browse(name, params) {
  const list = (await get("/v1/topics")).topics.map((t) => t.name).sort();
  if (!name) {
    render(h`<h1>Messages</h1><p>Choose a topic:</p><ul>${list.slice(0, 2000).map((t) => h`<li><a href="#/browse/${enc(t)}">${t}</a></li>`)}</ul>`);
    return;
  }
  const t = await get(`/v1/topics/${enc(name)}`);
  const q = new URLSearchParams(params);
  render(h`<h1>Messages in <a href="#/topics/${enc(name)}">${name}</a></h1>
    <form class="inline" id="query">
      <label>Partition<select name="partition"><option value="">all</option>${t.partitions.map((p) => h`<option ${q.get("partition") === String(p.partition) ? "selected" : ""}>${p.partition}</option>`)}</select></label>
      <label>From<select name="from">${["end", "start", "offset", "time"].map((f) => h`<option ${q.get("from") === f ? "selected" : ""}>${f}</option>`)}</select></label>
      <label>Offset<input name="offset" type="number" min="0" value="${q.get("offset") || ""}"></label>
      <label>Time<input name="time" type="datetime-local" step="1" value="${q.get("time") || ""}"></label>
      <label>Key<input name="key" value="${q.get("key") || ""}"></label>
      <label>Header (name=value)<input name="header" value="${q.get("header") || ""}"></label>
      <label>JSON field (a.b=value)<input name="field" value="${q.get("field") || ""}"></label>
      <label>Limit<input name="limit" type="number" min="1" max="1000" value="${q.get("limit") || 50}"></label>
      <button class="primary">Read</button> <button type="button" id="tail">Live tail</button>
    </form>
    <p class="muted" id="summary"></p>
    <table><thead><tr><th class="num">Partition</th><th class="num">Offset</th><th>Time</th><th>Key</th><th>Value</th></tr></thead><tbody id="records"></tbody></table>
    <div id="detail"></div>
    <h2>Produce a record</h2>
    <form id="produce" class="inline"><label>Key<input name="key"></label>
      <label>Value (JSON or text)<textarea name="value" rows="3" cols="48"></textarea></label>
      <label>Headers (JSON object)<textarea name="headers" rows="3" cols="28" placeholder='{"source": "console"}'></textarea></label>
      <label>Partition<input name="partition" type="number" min="0" placeholder="by key"></label>
      <button class="primary">Produce</button></form>`);
  const shown = [];
  const show = (records) => {
    shown.length = 0; shown.push(...records);
    document.getElementById("records").innerHTML = records.map((r, i) => String(h`<tr class="clickable" tabindex="0" data-i="${i}"><td class="num">${r.partition}</td><td class="num">${r.offset}</td><td>${time(r.timestamp)}</td><td class="cell"><code>${r.key ?? ""}</code></td><td class="cell"><code>${preview(r)}</code></td></tr>`)).join("");
  };
  const open = (el) => { const r = shown[Number(el.dataset.i)]; if (r) document.getElementById("detail").innerHTML = String(recordDetail(r)); };
  const tbody = document.getElementById("records");
  tbody.onclick = (e) => { const tr = e.target.closest("tr"); if (tr) open(tr); };
  tbody.onkeydown = (e) => { if (e.key === "Enter") { const tr = e.target.closest("tr"); if (tr) open(tr); } };
  const form = document.getElementById("query");
  form.onsubmit = (e) => {
    e.preventDefault();
    const f = new URLSearchParams(new FormData(form));
    for (const [k, v] of [...f.entries()]) if (v === "") f.delete(k);
    location.hash = `#/browse/${enc(name)}?${f}`;
  };
  let tail = null;
  document.getElementById("tail").onclick = (e) => {
    if (tail) { tail.close(); tail = null; e.target.textContent = "Live tail"; return; }
    e.target.textContent = "Stop tail";
    const records = [];
    const part = form.partition.value;
    tail = events(`/v1/topics/${enc(name)}/events?from=end${part ? `&partition=${part}` : ""}`);
    tail.addEventListener("error", (ev) => { if (ev.data) toast(ev.data, true); });
    tail.addEventListener("record", (ev) => { records.unshift(JSON.parse(ev.data)); if (records.length > 200) records.pop(); show(records); document.getElementById("summary").textContent = `Live: ${records.length} new record(s).`; });
    live.stopTail = () => tail && tail.close();
  };
  document.getElementById("produce").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const rec = {};
    if (f.get("key")) rec.key = f.get("key");
    const value = f.get("value");
    try { rec.value = JSON.parse(value); } catch { rec.value = value; }
    if (f.get("headers")) { try { rec.headers = JSON.parse(f.get("headers")); } catch { toast("Headers must be a JSON object", true); return; } }
    if (f.get("partition") !== "") rec.partition = Number(f.get("partition"));
    attempt(async () => {
      const res = await api("POST", `/v1/topics/${enc(name)}/records`, rec);
      const at = res.offsets[0];
      toast(`Produced to partition ${at.partition} at offset ${at.offset}`);
    });
  };
  const t0 = performance.now();
  const result = await readRecords(t, q);
  show(result.records);
  document.getElementById("summary").textContent = `${result.records.length} record(s)${result.scanned != null ? `, ${num(result.scanned)} scanned` : ""}; read in ${Math.round(performance.now() - t0)} ms.`;
}

// Reads records from one or every partition, merged by time.
async function readRecords(t, q) {
  const limit = Math.min(1000, Number(q.get("limit") || 50));
  const parts = q.get("partition") ? t.partitions.filter((p) => String(p.partition) === q.get("partition")) : t.partitions;
  const from = q.get("from") || "end";
  const filters = ["key", "header", "field"].filter((k) => q.get(k));
  let scanned = filters.length ? 0 : null;
  const per = await Promise.all(parts.map(async (p) => {
    const s = new URLSearchParams({ max_records: String(limit) });
    if (from === "start") s.set("offset", "start");
    else if (from === "offset") s.set("offset", q.get("offset") || "0");
    else if (from === "time") s.set("timestamp", String(new Date(q.get("time")).getTime() || 0));
    else s.set("offset", String(filters.length ? p.log_start_offset : Math.max(p.log_start_offset, p.high_watermark - limit)));
    filters.forEach((k) => s.set(k, q.get(k)));
    if (filters.length) s.set("scan_records_max", String(SCAN_RECORDS_MAX));
    const r = await get(`/v1/topics/${enc(t.name)}/partitions/${p.partition}/records?${s}`);
    if (scanned != null) scanned += r.scanned;
    return r.records;
  }));
  let records = per.flat().sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset);
  records = from === "end" && !filters.length ? records.slice(-limit).reverse() : records.slice(0, limit);
  return { records, scanned };
}

