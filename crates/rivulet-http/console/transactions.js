// Open transactions and their abort.

import { api, get } from "./api.js";
import { duration, enc } from "./format.js";
import { h, render } from "./html.js";
import { attempt, confirmAction, toast } from "./notify.js";

export async function transactions() {
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

