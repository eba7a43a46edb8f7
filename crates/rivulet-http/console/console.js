// Rivulet's web console. Every figure and action goes through the gateway's documented
// /v1 API (see /openapi.json); live figures arrive over Server-Sent Events.

const TOKEN_KEY = "rivulet.token";
const HISTORY_POINTS = 300; // five minutes of one-second readings
const SCAN_RECORDS_MAX = 2000000; // records a filtered read looks at per partition
const $main = () => document.getElementById("main");

// ---- HTML with every interpolation escaped -------------------------------------------------
class Raw { constructor(s) { this.s = s; } toString() { return this.s; } }
const raw = (s) => new Raw(s);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
function h(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    if (Array.isArray(v)) out += v.map((x) => (x instanceof Raw ? x.s : esc(x))).join("");
    else out += v instanceof Raw ? v.s : esc(v);
    out += strings[i + 1];
  });
  return raw(out);
}
const render = (html) => { $main().innerHTML = String(html); };

// ---- formatting ----------------------------------------------------------------------------
// Formatters are made once: a toLocaleString call with options builds one each time.
const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const WHOLE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const num = (n) => (n == null ? "–" : NUMBER.format(Number(n)));
function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${(i ? NUMBER : WHOLE).format(v)} ${units[i]}`;
}
const time = (ms) => (ms == null ? "–" : new Date(ms).toISOString().replace("T", " ").replace("Z", ""));
function duration(ms) {
  if (ms == null) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}
const enc = encodeURIComponent;

// ---- API -----------------------------------------------------------------------------------
function token() { return sessionStorage.getItem(TOKEN_KEY); }
async function api(method, path, body, extraHeaders = {}) {
  const headers = { "X-Rivulet-Console": "1", ...extraHeaders };
  if (token() && !headers.Authorization) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (res.status === 401 && !path.startsWith("/v1/tokens")) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(data?.message);
    throw new Error("login required");
  }
  if (!res.ok) throw new Error(data?.message || `${res.status} ${res.statusText}`);
  return data;
}
const get = (path) => api("GET", path);
function events(path) {
  const sep = path.includes("?") ? "&" : "?";
  return new EventSource(token() ? `${path}${sep}access_token=${enc(token())}` : path);
}

// ---- notices and confirmation --------------------------------------------------------------
function toast(message, bad = false) {
  const el = document.createElement("div");
  el.textContent = message;
  if (bad) el.className = "bad";
  document.getElementById("toast").append(el);
  setTimeout(() => el.remove(), bad ? 8000 : 4000);
}
async function attempt(fn) {
  try { return await fn(); } catch (e) { if (e.message !== "login required") toast(e.message, true); return undefined; }
}
// Resolves true when confirmed; with `typed`, the user must type it first.
function confirmAction(text, typed) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const label = document.getElementById("confirm-typed-label");
  const input = document.getElementById("confirm-typed");
  const ok = document.getElementById("confirm-ok");
  label.hidden = !typed;
  document.getElementById("confirm-name").textContent = typed || "";
  input.value = "";
  ok.disabled = Boolean(typed);
  input.oninput = () => { ok.disabled = input.value !== typed; };
  return new Promise((resolve) => {
    dlg.onclose = () => resolve(dlg.returnValue === "ok" && (!typed || input.value === typed));
    dlg.returnValue = "";
    dlg.showModal();
    (typed ? input : ok).focus();
  });
}

// ---- live figures ----------------------------------------------------------------------------
const live = { source: null, group: null, history: [], last: null, listeners: new Set() };
function startLive(group = null) {
  if (live.source && live.group === group) return;
  if (live.source) live.source.close();
  live.group = group;
  if (group !== live.historyGroup) { live.groupHistory = []; live.historyGroup = group; }
  live.source = events(group ? `/v1/stats/events?group=${enc(group)}` : "/v1/stats/events");
  live.source.addEventListener("stats", (ev) => {
    const s = JSON.parse(ev.data);
    live.last = s;
    live.history.push(s);
    if (live.history.length > HISTORY_POINTS) live.history.shift();
    if (s.group) {
      live.groupHistory.push({ t: s.time_ms, lag: s.group.total_lag });
      if (live.groupHistory.length > HISTORY_POINTS) live.groupHistory.shift();
    }
    live.listeners.forEach((fn) => fn(s));
  });
}
function onLive(fn) { live.listeners.clear(); live.listeners.add(fn); if (live.last) fn(live.last); }

// A line chart of up to three series over the readings, drawn as SVG. The time axis spans
// the readings kept (at least a minute's width, at most five minutes).
const CHART_POINTS_MIN = 60;
function chart(title, series, points, format = num) {
  const w = 600; const hgt = 120; const pad = 4;
  const span = Math.max(CHART_POINTS_MIN, points.length) - 1;
  const max = Math.max(1, ...series.flatMap((s) => points.map(s.value)));
  const x = (i) => w - ((points.length - 1 - i) / span) * w;
  const y = (v) => hgt - pad - (v / max) * (hgt - 2 * pad);
  const lines = series.map((s, k) => {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(s.value(p)).toFixed(1)}`).join(" ");
    return `<path d="${d}" class="line${k + 1}"/>`;
  }).join("");
  const legend = series.map((s, k) => h`<span><i class="key${k + 1}"></i>${s.name} ${points.length ? format(s.value(points[points.length - 1])) : "–"}</span>`);
  const minutes = Math.max(1, Math.round(span / 60));
  return h`<div class="card chart"><div class="label">${title} <span class="muted">(max ${format(max)}, last ${minutes} min)</span></div>
    <svg viewBox="0 0 ${w} ${hgt}" preserveAspectRatio="none" role="img" aria-label="${title}">${raw(lines)}</svg>
    <div class="legend">${legend}</div></div>`;
}

// ---- pages ---------------------------------------------------------------------------------
async function overview() {
  startLive(live.group);
  const status = await get("/v1/status");
  render(h`<h1>Overview</h1><div id="cards" class="grid"></div><div id="charts" class="charts"></div>
    <h2>Listeners</h2><div id="listeners"></div>
    <p class="muted">Rivulet ${status.version}, up ${duration(status.uptime_seconds * 1000)}.</p>`);
  onLive((s) => {
    const cards = [
      ["Produce", `${num(s.produced.records_per_s)} rec/s`], ["Produce bytes", `${bytes(s.produced.bytes_per_s)}/s`],
      ["Consume", `${num(s.fetched.records_per_s)} rec/s`], ["Consume bytes", `${bytes(s.fetched.bytes_per_s)}/s`],
      ["Kafka connections", num(s.connections.kafka)], ["AMQP connections", num(s.connections.amqp)],
      ["Event streams", num(s.connections.sse)], ["Topics / partitions", `${num(s.topics)} / ${num(s.partitions)}`],
      ["Groups", num(s.groups)], ["Disk used", bytes(s.disk.topics_bytes)],
      ["Disk free", bytes(s.disk.usable_bytes)], ["fsync avg / max", `${num(s.fsync.ms_avg)} / ${num(s.fsync.ms_max)} ms`],
    ];
    const el = document.getElementById("cards");
    if (!el) return;
    el.innerHTML = cards.map(([k, v]) => `<div class="card"><div class="label">${esc(k)}</div><div class="value">${esc(v)}</div></div>`).join("")
      + (s.disk.alarm ? `<div class="card"><div class="label">Disk alarm</div><div class="value error">raised</div></div>` : "");
    const pts = live.history;
    document.getElementById("charts").innerHTML = String(h`${chart("Records per second", [
      { name: "produced", value: (p) => p.produced.records_per_s }, { name: "consumed", value: (p) => p.fetched.records_per_s }], pts)}
      ${chart("Bytes per second", [{ name: "in", value: (p) => p.produced.bytes_per_s }, { name: "out", value: (p) => p.fetched.bytes_per_s }], pts, (v) => `${bytes(v)}/s`)}
      ${chart("Durable writes (fsync)", [{ name: "avg ms", value: (p) => p.fsync.ms_avg }, { name: "max ms", value: (p) => p.fsync.ms_max }], pts, (v) => `${num(v)} ms`)}`);
    document.getElementById("listeners").innerHTML = String(h`<table><thead><tr><th>Protocol</th><th>Address</th><th>State</th></tr></thead><tbody>
      ${s.listeners.map((l) => h`<tr><td>${l.protocol}</td><td><code>${l.address}</code></td><td>${l.up ? h`<span class="pill ok">up</span>` : h`<span class="pill bad">down</span> ${l.error || ""}`}</td></tr>`)}
      <tr><td>http</td><td><code>${location.host}</code></td><td><span class="pill ok">up</span></td></tr></tbody></table>`);
  });
}

async function topics() {
  startLive(null);
  const t0 = performance.now();
  const { topics: list } = await get("/v1/topics");
  list.sort((a, b) => a.name.localeCompare(b.name));
  render(h`<h1>Topics <span class="muted">(${list.length})</span></h1>
    <form class="inline" id="create"><label>Name<input name="name" required pattern="[A-Za-z0-9._\\-]+" maxlength="249"></label>
      <label>Partitions<input name="partitions" type="number" min="1" max="10000" value="1"></label>
      <label>Retention (ms, -1 forever)<input name="retention" type="number" min="-1" placeholder="default"></label>
      <button class="primary">Create topic</button></form>
    <div class="toolbar"><label>Filter<input id="filter" type="search" placeholder="name contains…"></label></div>
    <table><thead><tr><th>Name</th><th class="num">Partitions</th><th class="num">Records</th><th class="num">Size</th><th class="num">Rate</th><th>Retention</th><th></th></tr></thead>
    <tbody id="rows"></tbody></table><p class="muted" id="rendered"></p>`);
  const rates = new Map();
  const rows = (filter) => list.filter((t) => !filter || t.name.includes(filter)).map((t) => h`<tr>
      <td><a href="#/topics/${enc(t.name)}">${t.name}</a></td><td class="num">${t.partitions}</td><td class="num">${num(t.records)}</td>
      <td class="num">${bytes(t.size_bytes)}</td><td class="num" data-rate="${t.name}">${rates.has(t.name) ? `${num(rates.get(t.name))}/s` : "–"}</td>
      <td>${t.retention_ms == null ? "–" : t.retention_ms < 0 ? "forever" : duration(t.retention_ms)}</td>
      <td><a href="#/browse/${enc(t.name)}">browse</a></td></tr>`);
  const tbody = document.getElementById("rows");
  tbody.innerHTML = rows("").map(String).join("");
  document.getElementById("rendered").textContent = `Rendered ${list.length} topics in ${Math.round(performance.now() - t0)} ms.`;
  document.getElementById("filter").oninput = (e) => { tbody.innerHTML = rows(e.target.value).map(String).join(""); };
  document.getElementById("create").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const body = { name: f.get("name"), partitions: Number(f.get("partitions")) };
    if (f.get("retention") !== "") body.configs = { "retention.ms": f.get("retention") };
    attempt(async () => {
      await api("POST", "/v1/topics", body);
      toast(`Topic ${body.name} created`);
      location.hash = `#/topics/${enc(body.name)}`;
    });
  };
  onLive((s) => {
    rates.clear();
    s.topic_rates.forEach((r) => rates.set(r.topic, r.records_per_s));
    document.querySelectorAll("[data-rate]").forEach((td) => {
      const r = rates.get(td.dataset.rate);
      td.textContent = r ? `${num(r)}/s` : "–";
    });
  });
}

async function topicDetail(name) {
  const t = await get(`/v1/topics/${enc(name)}`);
  const overrides = t.configs.filter((c) => c.source !== "DEFAULT_CONFIG");
  render(h`<h1>Topic ${t.name}</h1>
    <div class="toolbar"><a href="#/browse/${enc(t.name)}">Browse messages</a> <button class="danger" id="delete">Delete topic…</button></div>
    <h2>Partitions</h2><table><thead><tr><th class="num">Partition</th><th class="num">Log start</th><th class="num">High watermark</th><th class="num">Records</th><th class="num">Size</th><th class="num">Segments</th></tr></thead><tbody>
    ${t.partitions.map((p) => h`<tr><td class="num">${p.partition}</td><td class="num">${num(p.log_start_offset)}</td><td class="num">${num(p.high_watermark)}</td><td class="num">${num(p.high_watermark - p.log_start_offset)}</td><td class="num">${bytes(p.size_bytes)}</td><td class="num">${p.segments}</td></tr>`)}
    </tbody></table>
    <h2>Configs</h2>
    <form class="inline" id="set"><label>Key<select name="key">${t.configs.map((c) => h`<option>${c.name}</option>`)}</select></label>
      <label>Value<input name="value" required></label><button class="primary">Set</button></form>
    <table><thead><tr><th>Key</th><th>Value</th><th>Source</th><th></th></tr></thead><tbody>
    ${t.configs.map((c) => h`<tr><td><code>${c.name}</code></td><td><code>${c.value}</code></td><td>${c.source === "DEFAULT_CONFIG" ? "default" : h`<b>override</b>`}</td>
      <td>${c.source === "DEFAULT_CONFIG" ? "" : h`<button data-reset="${c.name}">Reset to default</button>`}</td></tr>`)}
    </tbody></table><p class="muted">${overrides.length} override(s).</p>`);
  document.getElementById("delete").onclick = async () => {
    if (!(await confirmAction(`Delete topic ${t.name} and all its records? This cannot be undone.`, t.name))) return;
    attempt(async () => { await api("DELETE", `/v1/topics/${enc(t.name)}`); toast(`Topic ${t.name} deleted`); location.hash = "#/topics"; });
  };
  const change = (body) => attempt(async () => { await api("PATCH", `/v1/topics/${enc(t.name)}/configs`, body); toast("Configs saved"); topicDetail(name); });
  document.getElementById("set").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    change({ set: { [f.get("key")]: f.get("value") } });
  };
  document.querySelectorAll("[data-reset]").forEach((b) => { b.onclick = () => change({ delete: [b.dataset.reset] }); });
}

// ---- message browser -------------------------------------------------------------------------
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
function preview(r) {
  if (r.value_base64 != null) return `(binary, ${Math.floor((r.value_base64.length * 3) / 4)} bytes)`;
  return r.value == null ? "(null)" : r.value.slice(0, 200);
}

async function browse(name, params) {
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

// ---- consumer groups -------------------------------------------------------------------------
async function groups() {
  startLive(null);
  const { groups: list } = await get("/v1/groups");
  list.sort((a, b) => a.group.localeCompare(b.group));
  render(h`<h1>Consumer groups <span class="muted">(${list.length})</span></h1>
    <table><thead><tr><th>Group</th><th>Protocol</th><th>State</th></tr></thead><tbody>
    ${list.map((g) => h`<tr><td><a href="#/groups/${enc(g.group)}">${g.group}</a></td><td>${g.protocol_type || "–"}</td><td>${g.state}</td></tr>`)}
    </tbody></table>`);
}

async function groupDetail(name) {
  startLive(name);
  const g = await get(`/v1/groups/${enc(name)}`);
  const topicsOf = [...new Set(g.partitions.map((p) => p.topic))];
  render(h`<h1>Group ${g.group}</h1>
    <p>State <span class="pill" id="group-state">${g.state}</span> · protocol ${g.protocol || "–"} · <span id="member-count">${g.members.length}</span> member(s) · total lag <b id="total-lag">${num(g.total_lag)}</b></p>
    <div id="lag-chart"></div>
    <h2>Members</h2><div id="members"></div>
    <h2>Lag per partition</h2><table><thead><tr><th>Topic</th><th class="num">Partition</th><th class="num">Committed</th><th class="num">End</th><th class="num">Lag</th><th class="num">Lag (time)</th></tr></thead><tbody id="lag-rows"></tbody></table>
    <h2>Reset offsets</h2>
    <form id="reset" class="inline"><label>Topic<select name="topic">${topicsOf.map((t) => h`<option>${t}</option>`)}</select></label>
      <label>To<select name="to"><option value="start">start</option><option value="end">end</option><option value="timestamp">time</option><option value="offset">offset</option><option value="shift">shift by</option></select></label>
      <label>Offset / shift<input name="n" type="number"></label><label>Time<input name="time" type="datetime-local" step="1"></label>
      <button type="submit" name="mode" value="preview">Preview (dry run)</button>
      <button type="button" id="apply" class="danger" disabled>Apply</button></form>
    <div id="preview"></div>`);
  const lagRows = (parts) => parts.map((p) => String(h`<tr><td>${p.topic}</td><td class="num">${p.partition}</td><td class="num">${num(p.current_offset)}</td><td class="num">${num(p.log_end_offset)}</td><td class="num">${num(p.lag)}</td><td class="num">${p.lag_seconds == null ? "–" : `${num(p.lag_seconds)} s`}</td></tr>`)).join("");
  const members = (list) => String(list.length ? h`<table><thead><tr><th>Member</th><th>Client</th><th>Host</th></tr></thead><tbody>
      ${list.map((m) => h`<tr><td><code>${m.member_id}</code></td><td>${m.client_id}</td><td>${m.host}</td></tr>`)}</tbody></table>` : h`<p class="muted">No members.</p>`);
  document.getElementById("lag-rows").innerHTML = lagRows(g.partitions);
  document.getElementById("members").innerHTML = members(g.members);
  onLive((s) => {
    if (!s.group || s.group.group !== name || !document.getElementById("lag-rows")) return;
    document.getElementById("total-lag").textContent = num(s.group.total_lag);
    document.getElementById("group-state").textContent = s.group.state;
    document.getElementById("member-count").textContent = s.group.members.length;
    document.getElementById("members").innerHTML = members(s.group.members);
    document.getElementById("lag-rows").innerHTML = lagRows(s.group.partitions);
    document.getElementById("lag-chart").innerHTML = String(chart("Lag (records)", [{ name: "lag", value: (p) => p.lag }], live.groupHistory));
  });
  const form = document.getElementById("reset");
  let previewed = null;
  const body = (dry) => {
    const f = new FormData(form);
    const b = { topic: f.get("topic"), to: f.get("to"), dry_run: dry };
    if (b.to === "offset") b.offset = Number(f.get("n"));
    if (b.to === "shift") b.shift = Number(f.get("n"));
    if (b.to === "timestamp") b.timestamp = new Date(f.get("time")).getTime();
    return b;
  };
  form.oninput = () => { previewed = null; document.getElementById("apply").disabled = true; };
  form.onsubmit = (e) => {
    e.preventDefault();
    attempt(async () => {
      const b = body(true);
      const res = await api("POST", `/v1/groups/${enc(name)}/reset-offsets`, b);
      previewed = JSON.stringify(body(false));
      document.getElementById("preview").innerHTML = String(h`<p>Dry run: nothing changed yet.</p><table><thead><tr><th class="num">Partition</th><th class="num">Current</th><th class="num">New</th></tr></thead><tbody>
        ${res.partitions.map((p) => h`<tr><td class="num">${p.partition}</td><td class="num">${num(p.current_offset)}</td><td class="num">${num(p.new_offset)}</td></tr>`)}</tbody></table>`);
      document.getElementById("apply").disabled = false;
    });
  };
  document.getElementById("apply").onclick = async () => {
    if (!previewed || previewed !== JSON.stringify(body(false))) return;
    if (!(await confirmAction(`Move group ${name}'s offsets as previewed?`))) return;
    attempt(async () => {
      const res = await api("POST", `/v1/groups/${enc(name)}/reset-offsets`, JSON.parse(previewed));
      toast(`Offsets of ${res.partitions.length} partition(s) reset`);
      groupDetail(name);
    });
  };
}

// ---- dead letters ----------------------------------------------------------------------------
async function deadLetters(name) {
  const { dead_letter_topics: list } = await get("/v1/dead-letters");
  if (!name) {
    render(h`<h1>Dead letters</h1>${list.length ? h`<table><thead><tr><th>Topic</th><th class="num">Records</th><th class="num">Not redriven</th></tr></thead><tbody>
      ${list.map((d) => h`<tr><td><a href="#/dead-letters/${enc(d.topic)}">${d.topic}</a></td><td class="num">${num(d.records)}</td><td class="num">${num(d.pending)}</td></tr>`)}</tbody></table>`
      : h`<p class="muted">No dead-letter topics (topics named <code>*.dlq</code>).</p>`}`);
    return;
  }
  const info = list.find((d) => d.topic === name) || { records: 0, pending: 0 };
  const t = await get(`/v1/topics/${enc(name)}`);
  const per = await Promise.all(t.partitions.map((p) => get(`/v1/topics/${enc(name)}/partitions/${p.partition}/records?offset=start&max_records=200`)));
  const letters = per.flatMap((r) => r.records).sort((a, b) => a.timestamp - b.timestamp);
  const done = new Map((info.partitions || []).map((p) => [p.partition, p.redriven_before]));
  render(h`<h1>Dead letters in ${name}</h1>
    <p>${num(info.records)} stored, ${num(info.pending)} not redriven yet (group <code>${info.redrive_group || ""}</code>).</p>
    <div class="toolbar"><button id="redrive-selected" disabled>Redrive selected</button> <button id="redrive-all" class="primary">Redrive all pending</button></div>
    <table><thead><tr><th><input type="checkbox" id="all" aria-label="Select all"></th><th>Original</th><th>Error</th><th class="num">Attempts</th><th>Group</th><th>Key</th><th>Value</th><th></th></tr></thead><tbody>
    ${letters.map((r, i) => h`<tr><td><input type="checkbox" data-i="${i}" aria-label="Select ${r.partition}/${r.offset}"></td>
      <td><code>${r.headers["dlq.original.topic"] || "?"}/${r.headers["dlq.original.partition"] ?? "?"}@${r.headers["dlq.original.offset"] ?? "?"}</code></td>
      <td class="cell">${r.headers["dlq.error"] || ""}</td><td class="num">${r.headers["dlq.attempts"] || ""}</td><td>${r.headers["dlq.group"] || ""}</td>
      <td class="cell"><code>${r.key ?? ""}</code></td><td class="cell"><code>${preview(r)}</code></td>
      <td>${r.offset < (done.get(r.partition) ?? 0) ? h`<span class="pill ok">redriven</span> ` : ""}<button data-one="${i}">Redrive</button></td></tr>`)}
    </tbody></table>`);
  const redrive = (records) => attempt(async () => {
    const res = await api("POST", `/v1/dead-letters/${enc(name)}/redrive`, records ? { records } : {});
    toast(`${res.redriven} dead letter(s) redriven`);
    deadLetters(name);
  });
  const pos = (i) => ({ partition: letters[i].partition, offset: letters[i].offset });
  const boxes = () => [...document.querySelectorAll("input[data-i]")];
  const sync = () => { document.getElementById("redrive-selected").disabled = !boxes().some((b) => b.checked); };
  boxes().forEach((b) => { b.onchange = sync; });
  document.getElementById("all").onchange = (e) => { boxes().forEach((b) => { b.checked = e.target.checked; }); sync(); };
  document.querySelectorAll("[data-one]").forEach((b) => { b.onclick = () => redrive([pos(Number(b.dataset.one))]); });
  document.getElementById("redrive-selected").onclick = () => redrive(boxes().filter((b) => b.checked).map((b) => pos(Number(b.dataset.i))));
  document.getElementById("redrive-all").onclick = async () => {
    if (await confirmAction(`Publish every pending dead letter of ${name} back to its original topic?`)) redrive(null);
  };
}

// ---- AMQP queues and transactions ------------------------------------------------------------
async function queues() {
  const [{ queues: qs }, { exchanges: xs }] = await Promise.all([get("/v1/queues"), get("/v1/exchanges")]);
  render(h`<h1>AMQP queues <span class="muted">(${qs.length})</span></h1>
    <table><thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Unacked</th><th class="num">Consumers</th><th class="num">Published/s</th><th class="num">Delivered/s</th><th class="num">Size</th><th></th></tr></thead><tbody>
    ${qs.map((q) => h`<tr><td>${q.name}${q.durable ? "" : h` <span class="pill">transient</span>`}</td><td class="num">${num(q.messages_ready)}</td><td class="num">${num(q.messages_unacknowledged)}</td><td class="num">${q.consumers}</td>
      <td class="num">${num(q.published_per_s)}</td><td class="num">${num(q.delivered_per_s)}</td><td class="num">${bytes(q.size_bytes)}</td><td><button class="danger" data-purge="${q.name}">Purge…</button></td></tr>`)}
    </tbody></table>
    <h2>Exchanges</h2><table><thead><tr><th>Exchange</th><th>Type</th><th class="num">Bindings</th></tr></thead><tbody>
    ${xs.map((x) => h`<tr><td>${x.name || "(default)"}</td><td>${x.type}</td><td class="num">${x.bindings ? h`<button data-bindings="${x.name}">${x.bindings}</button>` : "0"}</td></tr>`)}</tbody></table>
    <div id="bindings"></div>`);
  document.querySelectorAll("[data-bindings]").forEach((b) => {
    b.onclick = () => attempt(async () => {
      const x = await get(`/v1/exchanges/${enc(b.dataset.bindings)}`);
      document.getElementById("bindings").innerHTML = String(h`<h2>Bindings of ${x.name}</h2><table><thead><tr><th>Queue</th><th>Routing key</th><th>Arguments</th></tr></thead><tbody>
        ${x.bindings.map((bd) => h`<tr><td>${bd.queue}</td><td><code>${bd.routing_key}</code></td><td><code>${Object.keys(bd.arguments || {}).length ? JSON.stringify(bd.arguments) : ""}</code></td></tr>`)}</tbody></table>`);
    });
  });
  document.querySelectorAll("[data-purge]").forEach((b) => {
    b.onclick = async () => {
      const q = b.dataset.purge;
      if (!(await confirmAction(`Purge every ready message of queue ${q}?`, q))) return;
      attempt(async () => { const r = await api("POST", `/v1/queues/${enc(q)}/purge`); toast(`${r.purged} message(s) purged`); queues(); });
    };
  });
}

async function transactions() {
  const { transactions: list } = await get("/v1/transactions");
  render(h`<h1>Transactions <span class="muted">(${list.length})</span></h1>
    <table><thead><tr><th>Transactional id</th><th>State</th><th class="num">Producer</th><th class="num">Open for</th><th class="num">Timeout</th><th>Partitions</th><th></th></tr></thead><tbody>
    ${list.map((t) => h`<tr><td>${t.transactional_id}</td><td>${t.state}</td><td class="num">${t.producer_id}/${t.producer_epoch}</td>
      <td class="num">${t.open_ms == null ? "–" : duration(t.open_ms)}${t.open_ms > t.timeout_ms ? h` <span class="pill bad">hanging</span>` : ""}</td><td class="num">${duration(t.timeout_ms)}</td>
      <td>${(t.partitions || []).map((p) => `${p.topic}/${p.partition}`).join(", ")}</td><td>${t.open_ms == null ? "" : h`<button class="danger" data-abort="${t.transactional_id}">Abort…</button>`}</td></tr>`)}
    </tbody></table>`);
  document.querySelectorAll("[data-abort]").forEach((b) => {
    b.onclick = async () => {
      if (!(await confirmAction(`Abort the open transaction of ${b.dataset.abort}? Its records will never be read by read_committed consumers.`))) return;
      attempt(async () => { await api("POST", `/v1/transactions/${enc(b.dataset.abort)}/abort`); toast("Transaction aborted"); transactions(); });
    };
  });
}

// ---- login -----------------------------------------------------------------------------------
function showLogin(message) {
  if (live.source) { live.source.close(); live.source = null; }
  render(h`<div class="login card"><h1>Log in</h1><p class="muted">This broker requires a login (a Rivulet user).</p>
    ${message ? h`<p class="error">${message}</p>` : ""}
    <form id="login"><label>User<input name="user" autocomplete="username" required></label>
    <label>Password<input name="password" type="password" autocomplete="current-password" required></label>
    <button class="primary">Log in</button></form></div>`);
  const form = document.getElementById("login");
  form.user.focus();
  form.onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(form);
    attempt(async () => {
      const basic = btoa(unescape(encodeURIComponent(`${f.get("user")}:${f.get("password")}`)));
      const res = await api("POST", "/v1/tokens", {}, { Authorization: `Basic ${basic}` });
      sessionStorage.setItem(TOKEN_KEY, res.token);
      sessionStorage.setItem(`${TOKEN_KEY}.user`, res.user);
      document.getElementById("toast").replaceChildren();
      route();
    });
  };
}
function whoami() {
  const el = document.getElementById("who");
  const user = sessionStorage.getItem(`${TOKEN_KEY}.user`);
  el.innerHTML = user && token() ? String(h`${user} <button id="logout">Log out</button>`) : "";
  const out = document.getElementById("logout");
  if (out) out.onclick = async () => { await api("DELETE", "/v1/tokens").catch(() => null); sessionStorage.clear(); location.hash = "#/"; showLogin(); };
}

// ---- routing -------------------------------------------------------------------------------
async function route() {
  if (live.stopTail) { live.stopTail(); live.stopTail = null; }
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || "overview";
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  whoami();
  const pages = {
    overview: () => overview(),
    topics: () => (parts[1] ? topicDetail(parts[1]) : topics()),
    browse: () => browse(parts[1], query || ""),
    groups: () => (parts[1] ? groupDetail(parts[1]) : groups()),
    "dead-letters": () => deadLetters(parts[1]),
    queues: () => queues(),
    transactions: () => transactions(),
  };
  const page = pages[section] || (() => render(h`<h1>Not found</h1><p><a href="#/">Overview</a></p>`));
  try {
    await page();
    document.title = `${section === "overview" ? "Overview" : parts.join(" / ")} · Rivulet console`;
  } catch (e) {
    if (e.message !== "login required") render(h`<h1>Error</h1><p class="error">${e.message}</p>`);
  }
}
window.addEventListener("hashchange", route);
route();
