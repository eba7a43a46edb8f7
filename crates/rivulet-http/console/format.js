// Numbers, sizes, times and durations as the console shows them.

// Formatters are made once: a toLocaleString call with options builds one each time.
const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const WHOLE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
export const num = (n) => (n == null ? "–" : NUMBER.format(Number(n)));
export function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${(i ? NUMBER : WHOLE).format(v)} ${units[i]}`;
}
export const time = (ms) => (ms == null ? "–" : new Date(ms).toISOString().replace("T", " ").replace("Z", ""));
export function duration(ms) {
  if (ms == null) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}
export const enc = encodeURIComponent;
