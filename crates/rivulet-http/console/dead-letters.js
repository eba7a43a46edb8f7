// Dead-letter topics and their redrive.

import { api, get } from "./api.js";
import { enc, num } from "./format.js";
import { h, render } from "./html.js";
import { attempt, confirmAction, toast } from "./notify.js";
import { preview } from "./browse.js";

export async function deadLetters(name) {
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

