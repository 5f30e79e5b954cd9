// How many jobs reached each status over time (the events table), drawn with uPlot.
import { api, h, STATUS_COLORS } from "./util.js";

export async function render(view) {
  const box = h("div", { id: "chart" });
  view.append(h("h2", {}, "Jobs reaching each status, per time step"), box);
  let plot = null;
  async function load() {
    const data = await api("/api/counts?buckets=120");
    const statuses = Object.keys(data.series);
    const rows = [data.t, ...statuses.map((s) => data.series[s])];
    if (plot) { plot.setData(rows); return; }
    if (!data.t.length) { box.replaceChildren(h("p", { class: "dim" }, "no event recorded yet")); return; }
    plot = new window.uPlot({
      width: Math.min(1100, view.clientWidth || 1100), height: 360,
      series: [{}, ...statuses.map((s) => ({ label: s, stroke: STATUS_COLORS[s], width: 2 }))],
      axes: [{}, { label: "jobs per step" }],
    }, rows, box);
  }
  await load();
  let last = 0;
  return {
    refresh: async () => { if (Date.now() - last > 3000) { last = Date.now(); await load(); } },
    stop: () => { if (plot) plot.destroy(); },
  };
}
