// AMQP queues, exchanges and bindings.

import { api, get } from "./api.js";
import { bytes, enc, num } from "./format.js";
import { h, render } from "./html.js";
import { onLive, startLive } from "./live.js";
import { attempt, confirmAction, toast } from "./notify.js";

const queueRows = (qs) => qs.map((q) => String(h`<tr data-queue="${q.name}"><td>${q.name}${q.durable ? "" : h` <span class="pill">transient</span>`}</td><td class="num">${num(q.messages_ready)}</td><td class="num">${num(q.messages_unacknowledged)}</td><td class="num">${q.consumers}</td>
      <td class="num">${num(q.published_per_s)}</td><td class="num">${num(q.delivered_per_s)}</td><td class="num">${bytes(q.size_bytes)}</td><td><button class="danger" data-purge="${q.name}">Purge…</button></td></tr>`)).join("");

// Queues update every second from the stats stream; exchanges as of loading the page.
export async function amqpQueues() {
  startLive(null, true);
  const [{ queues: qs }, { exchanges: xs }] = await Promise.all([get("/v1/queues"), get("/v1/exchanges")]);
  render(h`<h1>AMQP queues <span class="muted" id="queue-count">(${qs.length})</span></h1>
    <table><thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Unacked</th><th class="num">Consumers</th><th class="num">Published/s</th><th class="num">Delivered/s</th><th class="num">Size</th><th></th></tr></thead><tbody id="queue-rows">
    </tbody></table>
    <h2>Exchanges</h2><table><thead><tr><th>Exchange</th><th>Type</th><th class="num">Bindings</th></tr></thead><tbody>
    ${xs.map((x) => h`<tr><td>${x.name || "(default)"}</td><td>${x.type}</td><td class="num">${x.bindings ? h`<button data-bindings="${x.name}">${x.bindings}</button>` : "0"}</td></tr>`)}</tbody></table>
    <div id="bindings"></div>`);
  document.querySelectorAll("[data-bindings]").forEach((b) => {
    b.onclick = () => attempt(async () => {
      const x = await get(`/v1/exchanges/${enc(b.dataset.bindings)}`);
      document.getElementById("bindings").innerHTML = String(h`<h2>Bindings of ${x.name}</h2><table><thead><tr><th>Destination</th><th>Routing key</th><th>Arguments</th></tr></thead><tbody>
        ${x.bindings.map((bd) => h`<tr><td>${bd.destination_type === "exchange" ? `exchange ${bd.destination}` : bd.queue}</td><td><code>${bd.routing_key}</code></td><td><code>${Object.keys(bd.arguments || {}).length ? JSON.stringify(bd.arguments) : ""}</code></td></tr>`)}</tbody></table>`);
    });
  });
  const rows = document.getElementById("queue-rows");
  rows.innerHTML = queueRows(qs);
  rows.onclick = async (e) => {
    const q = e.target.closest("[data-purge]")?.dataset.purge;
    if (!q || !(await confirmAction(`Purge every ready message of queue ${q}?`, q))) return;
    attempt(async () => { const r = await api("POST", `/v1/queues/${enc(q)}/purge`); toast(`${r.purged} message(s) purged`); });
  };
  onLive((s) => {
    if (!s.queues || !document.getElementById("queue-rows")) return;
    rows.innerHTML = queueRows(s.queues);
    document.getElementById("queue-count").textContent = `(${s.queues.length})`;
  });
}

