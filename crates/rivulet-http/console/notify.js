// Notices and confirmations.

export function toast(message, bad = false) {
  const el = document.createElement("div");
  el.textContent = message;
  if (bad) el.className = "bad";
  document.getElementById("toast").append(el);
  setTimeout(() => el.remove(), bad ? 8000 : 4000);
}
export async function attempt(fn) {
  try { return await fn(); } catch (e) { if (e.message !== "login required") toast(e.message, true); return undefined; }
}
// Resolves true when confirmed; with `typed`, the user must type it first.
export function confirmAction(text, typed) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const label = document.getElementById("confirm-typed-label");
  const input = document.getElementById("confirm-typed");
  const ok = document.getElementById("confirm-ok");
  label.hidden = !typed;
  document.getElementById("confirm-name").textContent = typed || "";
  input.value = "";
  ok.disabled = Boolean(typed);
  input.oninput = () => { ok.disabled = input.value !== typed; };
  return new Promise((resolve) => {
    dlg.onclose = () => resolve(dlg.returnValue === "ok" && (!typed || input.value === typed));
    dlg.returnValue = "";
    dlg.showModal();
    (typed ? input : ok).focus();
  });
}
