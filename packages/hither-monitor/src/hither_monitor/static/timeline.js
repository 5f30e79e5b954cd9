// Jobs on a time axis, one row per worker (host:pid): who ran what, when.
import { api, h, sv, fmtTime, STATUS_COLORS } from "./util.js";

const ROW_H = 18, LEFT = 170, WIDTH = 1100;

export async function render(view) {
  const title = h("h2", {}, "Timeline of the latest jobs, per worker");
  const box = h("div", { class: "timeline-box" });
  view.append(title, box);
  async function load() {
    const { jobs } = await api("/api/timeline?limit=3000");
    if (!jobs.length) { box.replaceChildren(h("p", { class: "dim" }, "no job has started yet")); return; }
    const now = Date.now() / 1000;
    const t0 = Math.min(...jobs.map((j) => j.started_at));
    const t1 = Math.max(...jobs.map((j) => j.ended_at || now));
    const span = Math.max(t1 - t0, 1e-3);
    const workers = [...new Set(jobs.map((j) => `${j.host || "?"}:${j.pid || "?"}`))].sort();
    const rowOf = new Map(workers.map((w, i) => [w, i]));
    const x = (t) => LEFT + ((t - t0) / span) * (WIDTH - LEFT - 10);
    const svg = sv("svg", { id: "timeline", width: WIDTH, height: workers.length * ROW_H + 30 });
    workers.forEach((w, i) => svg.append(sv("text", { x: 4, y: i * ROW_H + 13, class: "axis" }, w)));
    // running jobs first: an ended job's bar is drawn over them
    jobs.sort((a, b) => (b.status === "running") - (a.status === "running"));
    for (const j of jobs) {
      const r = rowOf.get(`${j.host || "?"}:${j.pid || "?"}`);
      const xa = x(j.started_at), xb = Math.max(x(j.ended_at || now), xa + 1);
      svg.append(sv("a", { href: `#/job/${encodeURIComponent(j.job_id)}` },
        sv("rect", { x: xa, y: r * ROW_H + 2, width: xb - xa, height: ROW_H - 4, fill: STATUS_COLORS[j.status] || "#999" },
          sv("title", {}, `${j.function_name} · ${j.status} · ${fmtTime(j.started_at)}`))));
    }
    const y = workers.length * ROW_H + 18;
    svg.append(sv("text", { x: LEFT, y, class: "axis" }, fmtTime(t0)),
      sv("text", { x: WIDTH - 10, y, class: "axis", "text-anchor": "end" }, fmtTime(t1)));
    box.replaceChildren(svg);
  }
  await load();
  let last = 0;
  return { refresh: async () => { if (Date.now() - last > 5000) { last = Date.now(); await load(); } } };
}
