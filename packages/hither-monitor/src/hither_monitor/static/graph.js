// A run's pipeline as a layered graph (SVG): each job in the layer after its deepest input.
import { api, h, sv, STATUS_COLORS } from "./util.js";

const NODE_W = 150, NODE_H = 26, GAP_X = 50, GAP_Y = 10;

// layers by longest path from the sources; within a layer, ordered by the mean row of the inputs
export function layout(nodes, edges) {
  const ids = nodes.map((n) => n.job_id);
  const preds = new Map(ids.map((id) => [id, []]));
  const succs = new Map(ids.map((id) => [id, []]));
  for (const e of edges) {
    if (preds.has(e.target) && succs.has(e.source)) { preds.get(e.target).push(e.source); succs.get(e.source).push(e.target); }
  }
  const indeg = new Map(ids.map((id) => [id, preds.get(id).length]));
  const layer = new Map();
  const queue = ids.filter((id) => indeg.get(id) === 0);
  for (const id of queue) layer.set(id, 0);
  while (queue.length) {
    const id = queue.shift();
    for (const s of succs.get(id)) {
      layer.set(s, Math.max(layer.get(s) || 0, layer.get(id) + 1));
      indeg.set(s, indeg.get(s) - 1);
      if (indeg.get(s) === 0) queue.push(s);
    }
  }
  for (const id of ids) if (!layer.has(id)) layer.set(id, 0);   // a cycle (never in hither): put it first
  const layers = [];
  for (const id of ids) (layers[layer.get(id)] ||= []).push(id);
  const row = new Map();
  layers.forEach((ids_, li) => {
    if (li > 0) {
      const key = (id) => { const p = preds.get(id); return p.length ? p.reduce((a, q) => a + (row.get(q) || 0), 0) / p.length : 0; };
      ids_.sort((a, b) => key(a) - key(b));
    }
    ids_.forEach((id, r) => row.set(id, r));
  });
  const pos = new Map(ids.map((id) => [id, { x: layer.get(id) * (NODE_W + GAP_X), y: row.get(id) * (NODE_H + GAP_Y) }]));
  const width = layers.length * (NODE_W + GAP_X);
  const height = Math.max(...layers.map((l) => l.length), 1) * (NODE_H + GAP_Y);
  return { pos, width, height };
}

export async function render(view, parts) {
  const runId = parts.join("/");
  const g = await api(`/api/runs/${encodeURIComponent(runId)}/graph`);
  view.append(h("h2", {}, "Pipeline of run ", h("span", { class: "mono" }, runId)),
    h("p", {}, h("a", { href: `#/jobs?run=${encodeURIComponent(runId)}` }, "this run's jobs"),
      g.truncated ? h("span", { class: "dim" }, ` · the first ${g.nodes.length} jobs with links are shown`) : ""));
  if (!g.nodes.length) { view.append(h("p", { class: "dim" }, "no pipeline: this run's jobs take no other job's result")); return null; }
  const { pos, width, height } = layout(g.nodes, g.edges);
  const svg = sv("svg", { id: "graph", width: width + 10, height: height + 10, viewBox: `-5 -5 ${width + 10} ${height + 10}` });
  for (const e of g.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mx = (x1 + x2) / 2;
    svg.append(sv("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge" }));
  }
  for (const n of g.nodes) {
    const p = pos.get(n.job_id);
    const a = sv("a", { href: `#/job/${encodeURIComponent(n.job_id)}` },
      sv("rect", { x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 4, class: "node", fill: STATUS_COLORS[n.status] || "#ccc" }),
      sv("text", { x: p.x + 6, y: p.y + 17, class: "node-label" }, (n.function_name || n.job_id).slice(0, 20)),
      sv("title", {}, `${n.function_name} · ${n.status} · ${n.job_id}`));
    svg.append(a);
  }
  view.append(h("div", { class: "graph-box" }, svg));
  return null;
}
