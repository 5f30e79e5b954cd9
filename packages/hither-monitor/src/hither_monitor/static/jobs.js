// The jobs table: filters (status, function, handler, time), keyset paging, live refresh.
import { api, h, fmtTime, fmtDuration, statusBadge, jobLink } from "./util.js";

const PAGE = 50;
const FILTERS = ["status", "function", "handler", "since", "until", "run", "batch"];

function toLocalInput(t) {
  if (!t) return "";
  const d = new Date(t * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function select(name, values, chosen) {
  return h("select", { name, id: `f-${name}` }, h("option", { value: "" }, `any ${name}`),
    values.map((v) => h("option", { value: v, selected: v === chosen }, v)));
}

function row(j) {
  return h("tr", { "data-job": j.job_id, class: `r-${j.status}` },
    h("td", { class: "mono" }, jobLink(j.job_id)),
    h("td", {}, j.function_name || "", j.function_version ? h("span", { class: "dim" }, ` ${j.function_version}`) : ""),
    h("td", {}, statusBadge(j.status), j.cached ? h("span", { class: "tag" }, "cached") : ""),
    h("td", {}, j.handler || ""),
    h("td", { class: "mono" }, j.host ? `${j.host}${j.pid ? ":" + j.pid : ""}` : ""),
    h("td", {}, fmtTime(j.started_at || j.created_at)),
    h("td", { class: "num" }, j.started_at ? fmtDuration(j.started_at, j.ended_at) : ""),
    h("td", { class: "msg" }, j.error_message ? `${j.error_type ? j.error_type + ": " : ""}${j.error_message}`
                                               : (j.pending_reason || "")));
}

export async function render(view, _parts, params) {
  const state = { cursors: [null], page: 0 };
  const form = h("form", { id: "filters", class: "filters" },
    select("status", [], params.get("status")),
    select("function", [], params.get("function")),
    select("handler", [], params.get("handler")),
    h("label", {}, "from ", h("input", { type: "datetime-local", name: "since", value: toLocalInput(params.get("since")) })),
    h("label", {}, "to ", h("input", { type: "datetime-local", name: "until", value: toLocalInput(params.get("until")) })),
    h("button", { type: "reset", id: "f-clear" }, "Clear"));
  const total = h("span", { id: "total", class: "dim" });
  const prev = h("button", { id: "newer", disabled: true }, "‹ Newer");
  const next = h("button", { id: "older", disabled: true }, "Older ›");
  const tbody = h("tbody", { id: "jobs-body" });
  const table = h("table", { class: "jobs", id: "jobs" },
    h("thead", {}, h("tr", {}, ["Job", "Function", "Status", "Handler", "Worker", "Started", "Duration", "Message"]
      .map((c) => h("th", {}, c)))), tbody);
  view.append(form, h("div", { class: "pager" }, prev, next, total), table);

  function query(extra) {
    const q = new URLSearchParams();
    for (const k of FILTERS) { const v = params.get(k); if (v) q.set(k, v); }
    q.set("limit", PAGE);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return q;
  }
  // the total: from the status counts the header has when only the status is filtered, else
  // counted by the server on the first page (and again every 10th live refresh)
  const onlyStatus = FILTERS.every((k) => k === "status" || !params.get(k));
  let refreshes = 0;
  async function load(live = false) {
    const cursor = state.cursors[state.page];
    const q = query(cursor ? { before_t: cursor[0], before_id: cursor[1] } : {});
    const counts = window.hitherMonitor.counts;
    if (live && onlyStatus && counts) {
      const status = params.get("status");
      state.total = status ? (counts[status] || 0) : Object.values(counts).reduce((a, b) => a + b, 0);
    } else if (state.page === 0 && (!live || ++refreshes % 10 === 0)) {
      q.set("count", "1");
    }
    const data = await api(`/api/jobs?${q}`);
    tbody.replaceChildren(...data.jobs.map(row));
    if (!data.jobs.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "dim" }, "no job matches")));
    state.cursors[state.page + 1] = data.next;
    next.disabled = !data.next;
    prev.disabled = state.page === 0;
    if (data.total !== undefined) state.total = data.total;
    const first = state.page * PAGE;
    total.textContent = `${(first + (data.jobs.length ? 1 : 0)).toLocaleString()}–${(first + data.jobs.length).toLocaleString()} of ${(state.total || 0).toLocaleString()}`;
    if (!document.body.dataset.firstTable) document.body.dataset.firstTable = String(performance.now());
  }
  function setFilters() {
    const q = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || !el.value) continue;
      q.set(el.name, el.type === "datetime-local" ? String(new Date(el.value).getTime() / 1000) : el.value);
    }
    location.hash = `#/jobs?${q}`;
  }
  form.addEventListener("change", setFilters);
  form.addEventListener("reset", () => setTimeout(setFilters, 0));
  next.addEventListener("click", () => { state.page += 1; load(); });
  prev.addEventListener("click", () => { state.page = Math.max(0, state.page - 1); load(); });
  const loaded = load();
  window.hitherMonitor.facetsReady.then((facets) => {
    for (const [name, values] of [["status", facets.statuses], ["function", facets.functions], ["handler", facets.handlers]]) {
      const old = form.querySelector(`#f-${name}`);
      old.replaceWith(select(name, values, params.get(name)));
    }
  });
  await loaded;
  return {
    // live: the first page follows the log; a later page keeps still (its rows would shift)
    refresh: async () => { if (state.page === 0) await load(true); },
  };
}
