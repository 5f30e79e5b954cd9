// Small helpers of the page: the API, DOM building (text only, never HTML), formatting.

export async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (init.method && init.method !== "GET") {
    init.headers = { ...(init.headers || {}), "X-Hither-Monitor": "1" };
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function build(ns, tag, attrs, children) {
  const el = document.createElementNS(ns, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h("a", {href: "#x", class: "c"}, "text", child...): an HTML element; strings become text nodes
export function h(tag, attrs, ...children) {
  return build("http://www.w3.org/1999/xhtml", tag, attrs, children);
}

// the same for SVG elements (svg, g, a, rect, path, text, title)
export function sv(tag, attrs, ...children) {
  return build("http://www.w3.org/2000/svg", tag, attrs, children);
}

export function fmtTime(t) {
  if (t === null || t === undefined) return "";
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(a, b) {
  if (a === null || a === undefined) return "";
  const s = (b === null || b === undefined ? Date.now() / 1000 : b) - a;
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function statusBadge(status) {
  return h("span", { class: `status s-${status}` }, status);
}

export function jobLink(id, text) {
  return h("a", { href: `#/job/${encodeURIComponent(id)}` }, text || id);
}

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}

export const STATUS_COLORS = {
  created: "#9aa5b1", queued: "#b08900", running: "#1f77b4",
  finished: "#2ca02c", error: "#d62728", cancelled: "#7f7f7f",
};
