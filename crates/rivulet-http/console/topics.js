// The topic list and a topic's partitions and configs.

import { api, get } from "./api.js";
import { bytes, duration, enc, num } from "./format.js";
import { h, render } from "./html.js";
import { onLive, startLive } from "./live.js";
import { attempt, confirmAction, toast } from "./notify.js";

export async function topics() {
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

export async function topicDetail(name) {
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

