// The runs (programs that recorded jobs) and the batches (Slurm jobs, resources) as tables.
import { api, h, fmtTime, statusBadge } from "./util.js";

function table(id, heads, rows) {
  return h("table", { class: "jobs", id }, h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))), h("tbody", {}, rows));
}

export async function renderRuns(view) {
  const { runs } = await api("/api/runs");
  view.append(h("h2", {}, "Runs (programs that recorded jobs)"), table("runs", ["Run", "Host:pid", "Started", "Last seen", "Command", ""],
    runs.map((r) => h("tr", {},
      h("td", { class: "mono" }, h("a", { href: `#/jobs?run=${encodeURIComponent(r.run_id)}` }, r.run_id)),
      h("td", { class: "mono" }, `${r.host || ""}:${r.pid || ""}`), h("td", {}, fmtTime(r.started_at)),
      h("td", {}, fmtTime(r.last_seen)), h("td", { class: "msg" }, r.argv || ""),
      h("td", {}, h("a", { href: `#/run/${encodeURIComponent(r.run_id)}` }, "pipeline"))))));
  return null;
}

export async function renderBatches(view) {
  const box = h("div");
  view.append(h("h2", {}, "Batches: Slurm jobs, remote resources, containers"), box);
  async function load() {
    const { batches } = await api("/api/batches");
    const states = ["created", "queued", "running", "finished", "error", "cancelled"];
    box.replaceChildren(batches.length ? table("batches", ["Batch", "Handler", "Jobs", ...states, "Pending reason", "Last update"],
      batches.map((b) => h("tr", {},
        h("td", { class: "mono" }, h("a", { href: `#/jobs?batch=${encodeURIComponent(b.batch)}` }, b.batch)),
        h("td", {}, b.handler || ""), h("td", { class: "num" }, b.jobs),
        states.map((s) => h("td", { class: "num" }, b[s] ? [statusBadge(s), ` ${b[s]}`] : "")),
        h("td", { class: "msg" }, b.pending_reason || ""), h("td", {}, fmtTime(b.last)))))
      : h("p", { class: "dim" }, "no job ran in a batch (Slurm, a remote resource, a container)"));
  }
  await load();
  return { refresh: load };
}
