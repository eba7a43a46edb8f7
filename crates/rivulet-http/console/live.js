// The broker's live figures, pushed every second over /v1/stats/events, and charts of them.

import { events } from "./api.js";
import { num } from "./format.js";
import { h, raw } from "./html.js";

const HISTORY_POINTS = 300; // five minutes of one-second readings

export const live = { source: null, key: null, history: [], last: null, listeners: new Set() };
// Opens the stats stream, with a group's lag or the queues when a page wants them.
export function startLive(group = null, queues = false) {
  const key = JSON.stringify([group, queues]);
  if (live.source && live.key === key) return;
  if (live.source) live.source.close();
  live.key = key;
  live.group = group;
  if (group !== live.historyGroup) { live.groupHistory = []; live.historyGroup = group; }
  const query = new URLSearchParams();
  if (group) query.set("group", group);
  if (queues) query.set("queues", "true");
  live.source = events(`/v1/stats/events${query.size ? `?${query}` : ""}`);
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
export function onLive(fn) { live.listeners.clear(); live.listeners.add(fn); if (live.last) fn(live.last); }

// A line chart of up to three series over the readings, drawn as SVG. The time axis spans
// the readings kept (at least a minute's width, at most five minutes).
const CHART_POINTS_MIN = 60;
export function chart(title, series, points, format = num) {
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

