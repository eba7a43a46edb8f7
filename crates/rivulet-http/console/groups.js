// Consumer groups: members, live lag and offset resets.

import { api, get } from "./api.js";
import { enc, num, time } from "./format.js";
import { h, render } from "./html.js";
import { chart, live, onLive, startLive } from "./live.js";
import { attempt, confirmAction, toast } from "./notify.js";

export async function groups() {
  startLive(null);
  const { groups: list } = await get("/v1/groups");
  list.sort((a, b) => a.group.localeCompare(b.group));
  render(h`<h1>Consumer groups <span class="muted">(${list.length})</span></h1>
    <table><thead><tr><th>Group</th><th>Protocol</th><th>State</th></tr></thead><tbody>
    ${list.map((g) => h`<tr><td><a href="#/groups/${enc(g.group)}">${g.group}</a></td><td>${g.protocol_type || "–"}</td><td>${g.state}</td></tr>`)}
    </tbody></table>`);
}

export async function groupDetail(name) {
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

