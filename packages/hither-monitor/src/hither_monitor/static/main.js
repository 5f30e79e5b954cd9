// The page's entry: routes (#/jobs, #/job/ID, #/run/ID, ...), the status counts, live updates.
import { api, h, parseHash } from "./util.js";
import * as jobs from "./jobs.js";
import * as jobpage from "./jobpage.js";
import * as graph from "./graph.js";
import * as timeline from "./timeline.js";
import * as chart from "./chart.js";
import * as lists from "./lists.js";
import * as bus from "./bus.js";

const POLL_MS = 1000;
const views = {
  jobs: jobs.render, job: jobpage.render, run: graph.render, timeline: timeline.render,
  chart: chart.render, runs: lists.renderRuns, batches: lists.renderBatches, bus: bus.render,
};
let current = null;   // {name, handle}
let seq = 0;

function renderCounts(counts) {
  const box = document.getElementById("counts");
  box.replaceChildren(...Object.entries(counts).map(([status, n]) =>
    h("a", { class: `count s-${status}`, href: `#/jobs?status=${status}`, title: `${status} jobs`,
             "data-status": status }, h("span", { class: "dot" }), `${status} ${n.toLocaleString()}`)));
}

async function route() {
  const { parts, params } = parseHash();
  const name = views[parts[0]] ? parts[0] : "jobs";
  if (current && current.handle && current.handle.stop) current.handle.stop();
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === name || (name === "job" && a.dataset.view === "jobs"));
  }
  const view = document.getElementById("view");
  view.replaceChildren();
  current = { name, handle: null };
  const mine = current;
  try {
    const handle = await views[name](view, parts.slice(1), params);
    if (current === mine) mine.handle = handle; else if (handle && handle.stop) handle.stop();
  } catch (err) {
    view.replaceChildren(h("p", { class: "error" }, `Could not load this view: ${err.message}`));
  }
}

async function poll() {
  const live = document.getElementById("live");
  if (!document.hidden) {
    try {
      const ch = await api(`/api/changes?after=${seq}`);
      live.classList.remove("down");
      if (ch.count > 0) {
        seq = ch.seq;
        const summary = await api("/api/summary");
        window.hitherMonitor.counts = summary.counts;
        renderCounts(summary.counts);
        if (current && current.handle && current.handle.refresh) await current.handle.refresh(ch);
      }
    } catch (err) {
      live.classList.add("down");
      live.title = `live updates stopped: ${err.message}`;
    }
  }
  setTimeout(poll, POLL_MS);
}

async function start() {
  window.addEventListener("hashchange", route);
  // the table's query goes out at once, with these two: no request waits for another
  const summaryReady = api("/api/summary");
  const infoReady = api("/api/info");
  window.hitherMonitor = { facetsReady: summaryReady, infoReady };
  const routed = route();
  const [info, summary] = await Promise.all([infoReady, summaryReady]);
  seq = summary.seq;
  window.hitherMonitor.counts = summary.counts;
  renderCounts(summary.counts);
  document.getElementById("nav-bus").hidden = !info.bus;
  document.getElementById("footer").textContent = `hither-monitor ${info.version} · ${info.db}`;
  await routed;
  setTimeout(poll, POLL_MS);
}

start().catch((err) => {
  document.getElementById("view").replaceChildren(h("p", { class: "error" }, `The monitor did not start: ${err.message}`));
});
