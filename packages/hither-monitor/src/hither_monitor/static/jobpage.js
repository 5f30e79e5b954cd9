// One job's page: what it ran, where and when, its console output, its error, its inputs and outputs.
import { api, h, fmtTime, fmtDuration, statusBadge, jobLink } from "./util.js";

function field(name, value) {
  return value === null || value === undefined || value === "" ? null : h("tr", {}, h("th", {}, name), h("td", {}, value));
}

function links(title, jobs) {
  if (!jobs.length) return null;
  return h("section", {}, h("h3", {}, title), h("ul", { class: "links" },
    jobs.map((j) => h("li", {}, jobLink(j.job_id), " ", j.function_name || "", " ", statusBadge(j.status)))));
}

function console_(info) {
  if (!info) return null;
  const out = [];
  for (const stream of ["stdout", "stderr"]) {
    if (info[stream]) out.push(h("h4", {}, stream), h("pre", { class: `console ${stream}`, id: `console-${stream}` }, info[stream]));
  }
  const rest = Object.fromEntries(Object.entries(info).filter(([k]) => k !== "stdout" && k !== "stderr"));
  return h("section", {}, h("h3", {}, "Runtime info"),
    Object.keys(rest).length ? h("pre", { class: "json" }, JSON.stringify(rest, null, 2)) : null,
    out.length ? out : h("p", { class: "dim" }, "no console output recorded"));
}

function build(j) {
  const worker = j.host ? `${j.host}${j.pid ? ":" + j.pid : ""}` : null;
  const error = j.status === "error" || j.error_message ? h("section", { class: "error-box", id: "job-error" },
    h("h3", {}, "Error"), h("p", { class: "error-message" }, `${j.error_type ? j.error_type + ": " : ""}${j.error_message || ""}`),
    j.traceback ? h("pre", { class: "traceback" }, j.traceback) : null) : null;
  return [
    h("h2", {}, j.function_name || "job", " ", statusBadge(j.status), j.cached ? h("span", { class: "tag" }, "cached") : ""),
    h("table", { class: "fields", id: "job-fields" }, h("tbody", {},
      field("job", h("span", { class: "mono" }, j.job_id)),
      field("function", `${j.function_name || ""} ${j.function_version || ""}`),
      field("arguments", j.args_summary ? h("code", {}, j.args_summary) : null),
      field("handler", j.handler), field("worker", worker), field("batch", j.batch),
      field("pending reason", j.pending_reason), field("hash", j.job_hash),
      field("created", fmtTime(j.created_at)), field("started", fmtTime(j.started_at)),
      field("ended", fmtTime(j.ended_at)),
      field("duration", j.started_at ? fmtDuration(j.started_at, j.ended_at) : null),
      field("run", h("a", { href: `#/run/${encodeURIComponent(j.run_id)}` }, j.run_id,
        j.run && j.run.argv ? ` (${j.run.argv})` : "")))),
    error,
    links("Inputs: jobs whose results it takes", j.inputs || []),
    links("Outputs: jobs that take its result", j.outputs || []),
    console_(j.runtime_info),
    h("section", {}, h("h3", {}, "Events"), h("ul", { class: "events" },
      (j.events || []).map((e) => h("li", {}, fmtTime(e.t), " ", statusBadge(e.status))))),
  ];
}

// where the job is on the remote bus (same job hash), with a link to its live console
async function onTheBus(j) {
  const info = await window.hitherMonitor.infoReady;
  if (!info.bus || !j.job_hash) return null;
  const { jobs } = await api(`/api/bus/find?hash=${encodeURIComponent(j.job_hash)}`);
  if (!jobs.length) return null;
  return h("section", { id: "job-bus" }, h("h3", {}, "On the remote bus"), h("ul", { class: "links" },
    jobs.map((b) => h("li", {}, h("a", { href: `#/bus/job/${encodeURIComponent(b.job_id)}` }, b.job_id), " on ",
      b.resource_id, " ", statusBadge(b.status), " · console output (live while it runs)"))));
}

export async function render(view, parts) {
  const id = parts.join("/");
  async function load() {
    const j = await api(`/api/jobs/${encodeURIComponent(id)}`);
    const parts_ = build(j).filter(Boolean);
    let bus = null;
    try { bus = await onTheBus(j); } catch (err) { bus = null; }
    if (bus) parts_.splice(2, 0, bus);
    view.replaceChildren(...parts_);
  }
  await load();
  return {
    refresh: async (changes) => {
      if (changes.job_ids.includes(id) || changes.job_ids.length >= 200) await load();
    },
  };
}
