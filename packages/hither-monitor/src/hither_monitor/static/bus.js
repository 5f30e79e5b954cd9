// The remote job bus: resources with heartbeats and capacity, its jobs, live console output, cancel.
import { api, h, fmtTime, fmtDuration, statusBadge } from "./util.js";

const FINAL = ["finished", "error", "cancelled", "refused", "expired"];
const REFRESH_MS = 2000;

function cancelButton(job, after) {
  if (!["queued", "running"].includes(job.status)) return "";
  return h("button", { class: "cancel", "data-job": job.job_id, onclick: async (ev) => {
    ev.preventDefault();
    if (!confirm(`Cancel ${job.function_name} (${job.job_id})?`)) return;
    ev.target.disabled = true;
    try { await api(`/api/bus/jobs/${encodeURIComponent(job.job_id)}/cancel`, { method: "POST" }); }
    catch (err) { alert(`Cancel failed: ${err.message}`); }
    await after();
  } }, "Cancel");
}

async function renderJob(view, id) {
  const head = h("div");
  const pre = h("pre", { class: "console", id: "bus-console" });
  view.append(head, h("h3", {}, "Console output (live)"), pre);
  let seq = -1, attempt = null, timer = null, stopped = false;
  async function tick() {
    const job = await api(`/api/bus/jobs/${encodeURIComponent(id)}`);
    head.replaceChildren(h("h2", {}, job.function_name, " ", statusBadge(job.status), " ", cancelButton(job, tick)),
      h("p", {}, `on ${job.resource_id} · attempts ${job.attempts || 0} · created ${fmtTime(job.created)}` +
        (job.started ? ` · ran ${fmtDuration(job.started, job.ended)}` : "")),
      job.message ? h("p", { class: "error-message" }, job.message) : "");
    const c = await api(`/api/bus/jobs/${encodeURIComponent(id)}/console?after=${seq}` + (attempt !== null ? `&attempt=${attempt}` : ""));
    if (c.text) pre.append(c.text);
    seq = c.seq; attempt = c.attempt;
    if (!stopped && !FINAL.includes(job.status)) timer = setTimeout(tick, 1000);
  }
  await tick();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

export async function render(view, parts) {
  if (parts[0] === "job" && parts[1]) return renderJob(view, parts.slice(1).join("/"));
  const box = h("div");
  view.append(h("h2", {}, "Remote job bus"), box);
  let timer = null;
  async function load() {
    const b = await api("/api/bus?limit=100");
    if (!b.enabled) { box.replaceChildren(h("p", { class: "dim" }, "start the monitor with --mongo-url to see the bus")); return; }
    box.replaceChildren(
      h("p", {}, Object.entries(b.counts).map(([s, n]) => [statusBadge(s), ` ${n}  `])),
      h("h3", {}, "Resources"),
      h("table", { class: "jobs", id: "bus-resources" }, h("thead", {}, h("tr", {}, ["Resource", "Process", "State", "Heartbeat", "Running / capacity"].map((c) => h("th", {}, c)))),
        h("tbody", {}, b.resources.map((r) => h("tr", {}, h("td", {}, r.resource_id), h("td", { class: "mono" }, r.owner),
          h("td", {}, h("span", { class: `state st-${r.state.replace(/ /g, "-")}` }, r.state)),
          h("td", {}, `${(b.now - r.last_seen).toFixed(1)} s ago`), h("td", { class: "num" }, `${r.running} / ${r.capacity}`))))),
      h("h3", {}, "Jobs"),
      h("table", { class: "jobs", id: "bus-jobs" }, h("thead", {}, h("tr", {}, ["Job", "Function", "Resource", "Status", "Attempts", "Created", "Duration", "Message", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, b.jobs.map((j) => h("tr", { "data-job": j.job_id },
          h("td", { class: "mono" }, h("a", { href: `#/bus/job/${encodeURIComponent(j.job_id)}` }, j.job_id)),
          h("td", {}, j.function_name), h("td", {}, j.resource_id), h("td", {}, statusBadge(j.status)),
          h("td", { class: "num" }, j.attempts || 0), h("td", {}, fmtTime(j.created)),
          h("td", { class: "num" }, j.started ? fmtDuration(j.started, j.ended) : ""),
          h("td", { class: "msg" }, j.message || ""), h("td", {}, cancelButton(j, load)))))));
  }
  let stopped = false;
  async function loop() { try { await load(); } finally { if (!stopped) timer = setTimeout(loop, REFRESH_MS); } }
  await load();
  timer = setTimeout(loop, REFRESH_MS);
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}
