// Calls to the gateway's /v1 API with the session's bearer token, and event streams.

import { enc } from "./format.js";

export const TOKEN_KEY = "rivulet.token";
let unauthorized = () => {};
// What to do when the gateway asks for a login (the console shows its login form).
export function onUnauthorized(fn) { unauthorized = fn; }

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export async function api(method, path, body, extraHeaders = {}) {
  const headers = { "X-Rivulet-Console": "1", ...extraHeaders };
  if (token() && !headers.Authorization) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (res.status === 401 && !path.startsWith("/v1/tokens")) {
    sessionStorage.removeItem(TOKEN_KEY);
    unauthorized(data?.message);
    throw new Error("login required");
  }
  if (!res.ok) throw new Error(data?.message || `${res.status} ${res.statusText}`);
  return data;
}
export const get = (path) => api("GET", path);
export function events(path) {
  const sep = path.includes("?") ? "&" : "?";
  return new EventSource(token() ? `${path}${sep}access_token=${enc(token())}` : path);
}

