// Logging in (a bearer token from /v1/tokens) and out.

import { api, TOKEN_KEY, token } from "./api.js";
import { h, render } from "./html.js";
import { live } from "./live.js";
import { attempt } from "./notify.js";

// What to do once logged in (set by the first call: the console's router).
let after = () => {};
export function showLogin(message, loggedIn = after) {
  after = loggedIn;
  if (live.source) { live.source.close(); live.source = null; }
  render(h`<div class="login card"><h1>Log in</h1><p class="muted">This broker requires a login (a Rivulet user).</p>
    ${message ? h`<p class="error">${message}</p>` : ""}
    <form id="login"><label>User<input name="user" autocomplete="username" required></label>
    <label>Password<input name="password" type="password" autocomplete="current-password" required></label>
    <button class="primary">Log in</button></form></div>`);
  const form = document.getElementById("login");
  form.user.focus();
  form.onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(form);
    attempt(async () => {
      const basic = btoa(unescape(encodeURIComponent(`${f.get("user")}:${f.get("password")}`)));
      const res = await api("POST", "/v1/tokens", {}, { Authorization: `Basic ${basic}` });
      sessionStorage.setItem(TOKEN_KEY, res.token);
      sessionStorage.setItem(`${TOKEN_KEY}.user`, res.user);
      document.getElementById("toast").replaceChildren();
      loggedIn();
    });
  };
}
export function whoami() {
  const el = document.getElementById("who");
  const user = sessionStorage.getItem(`${TOKEN_KEY}.user`);
  el.innerHTML = user && token() ? String(h`${user} <button id="logout">Log out</button>`) : "";
  const out = document.getElementById("logout");
  if (out) out.onclick = async () => { await api("DELETE", "/v1/tokens").catch(() => null); sessionStorage.clear(); location.hash = "#/"; showLogin(); };
}

