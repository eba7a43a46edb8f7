// Rivulet's web console. Every figure and action goes through the gateway's documented
// /v1 API (see /openapi.json); live figures arrive over Server-Sent Events. This module
// routes the location's hash to a page.

import { onUnauthorized } from "./api.js";
import { amqpQueues } from "./amqp.js";
import { browse } from "./browse.js";
import { deadLetters } from "./dead-letters.js";
import { groupDetail, groups } from "./groups.js";
import { h, render } from "./html.js";
import { jobDetail, jobs } from "./jobs.js";
import { live } from "./live.js";
import { showLogin, whoami } from "./login.js";
import { overview } from "./overview.js";
import { stream, streams } from "./streams.js";
import { topicDetail, topics } from "./topics.js";
import { transactions } from "./transactions.js";

async function route() {
  if (live.stopTail) { live.stopTail(); live.stopTail = null; }
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || "overview";
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  whoami();
  const pages = {
    overview: () => overview(),
    topics: () => (parts[1] ? topicDetail(parts[1]) : topics()),
    browse: () => browse(parts[1], query || ""),
    groups: () => (parts[1] ? groupDetail(parts[1]) : groups()),
    "dead-letters": () => deadLetters(parts[1]),
    queues: () => amqpQueues(),
    transactions: () => transactions(),
    streams: () => (parts[1] ? stream(parts[1]) : streams(query || "")),
    jobs: () => (parts[1] ? jobDetail(parts[1], query || "") : jobs()),
  };
  const page = pages[section] || (() => render(h`<h1>Not found</h1><p><a href="#/">Overview</a></p>`));
  try {
    await page();
    document.title = `${section === "overview" ? "Overview" : parts.join(" / ")} · Rivulet console`;
  } catch (e) {
    if (e.message !== "login required") render(h`<h1>Error</h1><p class="error">${e.message}</p>`);
  }
}
onUnauthorized((message) => showLogin(message, route));
window.addEventListener("hashchange", route);
route();
