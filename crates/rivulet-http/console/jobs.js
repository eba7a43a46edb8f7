// Stream processing jobs as their instances report themselves: state, lag, watermark,
// late records and open windows; a job's instances, its lag per partition, and the open
// windows of a key (an interactive query answered by the job's instances).

import { get } from "./api.js";
import { duration, enc, num, time } from "./format.js";
import { h, render } from "./html.js";

const STATE = { running: "ok", stopped: "", unresponsive: "warn", failed: "bad" };
const pill = (s) => h`<span class="pill ${STATE[s] || ""}">${s}</span>`;
const sum = (job, field) => job.instances.reduce((n, i) => n + (i[field] || 0), 0);

export async function jobs() {
  const { jobs: list } = await get("/v1/jobs");
  render(h`<h1>Stream processing <span class="muted">(${list.length} jobs)</span></h1>
    <table id="jobs"><thead><tr><th>Job</th><th class="num">Running</th><th class="num">Lag</th><th class="num">Records in</th>
      <th class="num">Late</th><th class="num">Dead letters</th><th class="num">Open windows</th></tr></thead><tbody>
    ${list.map((j) => h`<tr data-job="${j.job}"><td><a href="#/jobs/${enc(j.job)}">${j.job}</a></td>
      <td class="num">${j.instances_running ? num(j.instances_running) : pill("stopped")}</td><td class="num">${num(j.lag)}</td>
      <td class="num">${num(sum(j, "records_in"))}</td>
      <td class="num">${sum(j, "late") ? h`<span class="pill warn">${num(sum(j, "late"))}</span>` : "0"}</td>
      <td class="num">${num(sum(j, "dead_lettered"))}</td><td class="num">${num(sum(j, "state_entries"))}</td></tr>`)}
    </tbody></table>
    ${list.length ? "" : h`<p class="muted">No job has reported. Jobs built with rivulet-stream write their status to the topic rivulet.jobs.</p>`}`);
}

export async function jobDetail(name, query) {
  const job = await get(`/v1/jobs/${enc(name)}`);
  const first = job.instances[0] || {};
  const key = new URLSearchParams(query).get("key") || "";
  render(h`<h1>Job ${name}</h1><p><a href="#/jobs">All jobs</a></p>
    <dl class="kv">
      <dt>Inputs</dt><dd>${(first.inputs || []).join(", ")}</dd><dt>Output</dt><dd>${first.output}</dd>
      <dt>Late records to</dt><dd>${first.late_topic}</dd><dt>Windows</dt><dd>${first.windows || "–"}</dd>
      <dt>Allowed lateness</dt><dd>${duration(first.lateness_ms)}</dd><dt>Out of orderness</dt><dd>${duration(first.out_of_orderness_ms)}</dd>
      <dt>Guarantee</dt><dd>${first.guarantee}</dd><dt>Lag</dt><dd>${num(job.lag)}</dd>
    </dl>
    <h2>Instances</h2>
    <table id="instances"><thead><tr><th>Instance</th><th>State</th><th class="num">Tasks</th><th class="num">Records in</th><th class="num">Results</th>
      <th class="num">Late</th><th class="num">Open windows</th><th>Watermark</th><th class="num">Checkpoints</th><th class="num">Last checkpoint</th></tr></thead><tbody>
    ${job.instances.map((i) => h`<tr><td>${i.instance}</td><td>${pill(i.state)}</td><td class="num">${num(i.tasks)}</td><td class="num">${num(i.records_in)}</td>
      <td class="num">${num(i.results_out)}</td><td class="num">${num(i.late)}</td><td class="num">${num(i.state_entries)}</td>
      <td>${time(i.watermark_ms)}</td><td class="num">${num(i.checkpoints)}</td><td class="num">${duration(i.checkpoint_last_ms)}</td></tr>`)}
    </tbody></table>
    <h2>Lag per partition</h2>
    <table id="job-lag"><thead><tr><th>Topic</th><th class="num">Partition</th><th class="num">Committed</th><th class="num">Lag</th></tr></thead><tbody>
    ${job.partitions.map((p) => h`<tr><td>${p.topic}</td><td class="num">${p.partition}</td><td class="num">${num(p.committed)}</td><td class="num">${num(p.lag)}</td></tr>`)}
    </tbody></table>
    <h2>State of a key</h2>
    <form id="key-query" class="inline"><input name="key" placeholder="Key" value="${key}"><button>Look up</button></form>
    <div id="key-state"></div>`);
  document.getElementById("key-query").onsubmit = (e) => {
    e.preventDefault();
    location.hash = `#/jobs/${enc(name)}?key=${enc(new FormData(e.target).get("key"))}`;
  };
  if (key) await keyState(name, key);
}

async function keyState(name, key) {
  const target = document.getElementById("key-state");
  try {
    const { instances } = await get(`/v1/jobs/${enc(name)}/state/${enc(key)}`);
    const rows = instances.flatMap((i) => (i.windows || []).map((w) => ({ instance: i.instance, ...w })));
    const errors = instances.filter((i) => i.error);
    target.innerHTML = String(h`<table id="key-windows"><thead><tr><th>Instance</th><th>Window start</th><th>Window end</th><th>Value</th></tr></thead><tbody>
      ${rows.map((w) => h`<tr><td>${w.instance}</td><td>${w.start_ms <= -8.6e15 ? "–" : time(w.start_ms)}</td>
        <td>${w.end_ms >= 8.6e15 ? "–" : time(w.end_ms)}</td><td><code>${JSON.stringify(w.value)}</code></td></tr>`)}
      </tbody></table>
      ${rows.length ? "" : h`<p class="muted">No open window for ${key}: its closed windows are in the output topic.</p>`}
      ${errors.map((i) => h`<p class="error">Instance ${i.instance}: ${i.error}</p>`)}`);
  } catch (e) {
    target.innerHTML = String(h`<p class="error">${e.message}</p>`);
  }
}
