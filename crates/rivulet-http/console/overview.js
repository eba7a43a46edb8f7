// The overview: live figures, charts and listeners.

import { get } from "./api.js";
import { bytes, duration, num } from "./format.js";
import { h, render, esc } from "./html.js";
import { chart, live, onLive, startLive } from "./live.js";

export async function overview() {
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

