// The event store: streams by name with their state, a stream's newest events, and the
// persistent subscription groups with their consumers, lag and parked events.

import { get } from "./api.js";
import { enc, num, time } from "./format.js";
import { h, render } from "./html.js";

const STATE = { live: "ok", deleted: "warn", tombstoned: "bad" };

export async function streams(query) {
  const prefix = new URLSearchParams(query).get("prefix") || "";
  const [{ streams: list, indexed_position: indexed }, { subscriptions: groups }] = await Promise.all([
    get(`/v1/streams?limit=500&prefix=${enc(prefix)}`),
    get("/v1/subscriptions"),
  ]);
  render(h`<h1>Event store <span class="muted">(${list.length} streams, position ${num(indexed)})</span></h1>
    <form id="stream-filter" class="inline"><input name="prefix" placeholder="Stream name prefix" value="${prefix}"><button>Filter</button></form>
    <table id="streams"><thead><tr><th>Stream</th><th class="num">Last revision</th><th>State</th></tr></thead><tbody>
    ${list.map((s) => h`<tr><td><a href="#/streams/${enc(s.name)}">${s.name}</a></td><td class="num">${num(s.last_revision)}</td>
      <td><span class="pill ${STATE[s.state] || ""}">${s.state}</span></td></tr>`)}
    </tbody></table>
    <h2>Persistent subscriptions <span class="muted">(${groups.length})</span></h2>
    <table id="subscriptions"><thead><tr><th>Source</th><th>Group</th><th>Status</th><th>Strategy</th><th class="num">Consumers</th>
      <th class="num">Checkpoint</th><th class="num">Lag</th><th class="num">In flight</th><th class="num">Parked</th></tr></thead><tbody>
    ${groups.map((g) => h`<tr><td>${g.source}</td><td>${g.group}</td><td>${g.status}</td><td>${g.strategy}</td><td class="num">${g.consumers.length}</td>
      <td class="num">${num(g.checkpoint)}</td><td class="num">${num(g.lag)}</td><td class="num">${num(g.in_flight)}</td>
      <td class="num">${g.parked ? h`<span class="pill warn">${num(g.parked)}</span>` : "0"}</td></tr>`)}
    </tbody></table>`);
  document.getElementById("stream-filter").onsubmit = (e) => {
    e.preventDefault();
    location.hash = `#/streams?prefix=${enc(new FormData(e.target).get("prefix"))}`;
  };
}

export async function stream(name) {
  const { events } = await get(`/v1/streams/${enc(name)}?direction=backwards&limit=50`);
  render(h`<h1>Stream ${name}</h1><p><a href="#/streams">All streams</a> · newest first, at most 50</p>
    <table id="events"><thead><tr><th class="num">Revision</th><th>Type</th><th>Id</th><th>Created</th><th>Data</th></tr></thead><tbody>
    ${events.map((e) => h`<tr><td class="num">${e.revision}</td><td>${e.type}</td><td><code>${e.id}</code></td><td>${time(e.created_ms)}</td>
      <td><code>${e.data === undefined ? `(${e.data_base64.length} base64 chars)` : JSON.stringify(e.data)}</code></td></tr>`)}
    </tbody></table>`);
}
