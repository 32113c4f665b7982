// Operations tab: active/history lists, the run form (runform.js) and the live output of one
// operation (SSE stream rendered by OpLog; finished operations from their stored logs).
// The operation shown has its own URL (#operations/OP-10001), a header saying what it ran
// (script names, flags, who, when), a summary strip (tasks ok/failed/running/queued/skipped,
// progress, ETA from the scripts' estimatedDuration, a live duration) and "Run again".
// The output groups, diffs and reruns of the operation are opgroups.js (#op-groups).

import * as api from "./api.js";
import {
  $, badge, confirmAction, downloadText, flagEntries, fmtDuration, fmtTime, h, relTime,
  replaceKeepingFocus, showError, statusKind, toast,
} from "./dom.js";
import { OpGroups, lineageNodes } from "./opgroups.js";
import { OpLog, taskStatus } from "./oplog.js";
import { initRunForm, prefillRunForm, refreshRunForm, selectTargets } from "./runform.js";
import { store } from "./store.js";

const POLL_MS = 4000;
const PAGE_SIZE = 15;
const ACTIVE = new Set(["queued", "running"]);

let listMode = "active";
let page = 1;
let timer = null;
let lastErrorShown = 0;
let ctx = null;
let catalogue = []; // scripts, for names and estimated durations
let tick = null; // 1 s timer for the live duration and ETA

// The operation shown in the output pane.
// {id, status, log: OpLog, groups: OpGroups, source: EventSource|null, scripts, targets,
//  flags, concurrency, startedAt (ms), endedAt (ms) | null, duration (s) | null, by,
//  parent, children}
let current = null;
let wanted = null; // id being opened (routing must not open it twice)

const scriptName = (id) => (catalogue.find((s) => s.id === id) || {}).name || id;
const scriptEstimate = (id) => {
  const found = catalogue.find((s) => s.id === id);
  const v = found ? Number(found.estimatedDuration) : NaN;
  return Number.isFinite(v) ? v : null;
};

export function init(context) {
  ctx = context;
  $("#ops-show-active").addEventListener("click", () => setMode("active"));
  $("#ops-show-history").addEventListener("click", () => setMode("history"));
  $("#ops-status").addEventListener("change", () => {
    page = 1;
    refreshList();
  });
  $("#ops-prev").addEventListener("click", () => {
    if (page > 1) page -= 1;
    refreshList();
  });
  $("#ops-next").addEventListener("click", () => {
    page += 1;
    refreshList();
  });
  $("#op-stop").addEventListener("click", stopCurrent);
  $("#op-rerun").addEventListener("click", runAgain);
  $("#op-search").addEventListener("input", applyOutputView);
  $("#op-failed-only").addEventListener("change", applyOutputView);
  $("#op-wrap").addEventListener("change", () => {
    $("#op-live-body").classList.toggle("wrap", $("#op-wrap").checked);
  });
  $("#op-download").addEventListener("click", downloadCurrent);
  initRunForm({
    onStarted: (id, op) => {
      openOperation(id, op);
      refreshList();
    },
  });
}

export function show() {
  store.scripts().then((list) => { catalogue = list; }, () => {});
  refreshRunForm();
  refreshList();
  if (!timer) timer = setInterval(refreshList, POLL_MS);
}

/** What the tab shows, for the URL when one switches back to it. */
export function routeArg() {
  return wanted || (current ? current.id : null);
}

/** Links → Run: the form with these targets ticked, focus on the scripts. */
export function runOn(targets) {
  selectTargets(targets);
}

/** Routing: #operations/OP-10001 opens that operation (load, reload, back/forward). */
export function route(arg) {
  if (!arg) return;
  if (wanted === arg || (current && current.id === arg && !wanted)) return;
  openOperation(arg, null, { fromRoute: true });
}

export function hide() {
  clearInterval(timer);
  timer = null;
}

function setMode(mode) {
  listMode = mode;
  page = 1;
  $("#ops-show-active").setAttribute("aria-pressed", String(mode === "active"));
  $("#ops-show-history").setAttribute("aria-pressed", String(mode === "history"));
  refreshList();
}

// ---- lists --------------------------------------------------------------------------------

function parseList(value) {
  if (Array.isArray(value)) return value;
  if (typeof value === "string") {
    try {
      const v = JSON.parse(value);
      return Array.isArray(v) ? v : [v];
    } catch {
      return value ? [value] : [];
    }
  }
  return [];
}

/** One row shape for both sources (table rows and /api/operations items). */
function normaliseOp(r) {
  return {
    id: r.id,
    status: String(r.status || "unknown"),
    scripts: parseList(r.scripts).map((s) => (typeof s === "object" ? s.id || s.name : s)),
    targets: parseList(r.targets),
    started: r.started ?? r.started_at ?? r.created ?? r.created_at ?? null,
    ended: r.ended ?? r.ended_at ?? null,
    duration: r.duration ?? null,
    by: r.triggered_by || "",
    flags: r.flags && typeof r.flags === "object" ? r.flags : {},
    concurrency: r.concurrency ?? null,
    parent: r.parent || null,
    children: Array.isArray(r.children) ? r.children : [],
  };
}

async function refreshList() {
  if (document.hidden) return;
  const status = $("#ops-status").value;
  try {
    // Active = queued + running (a status filter narrows it); history = everything else.
    const ended = "success,failed,partial,stopped,interrupted";
    const statuses = listMode === "active"
      ? (ACTIVE.has(status) ? status : status ? "none" : "queued,running")
      : (status && !ACTIVE.has(status) ? status : status ? "none" : ended);
    let ops = [];
    let hasNext = false;
    if (statuses !== "none") {
      const r = await api.operations({ status: statuses, page, pageSize: PAGE_SIZE });
      ops = r.operations.map(normaliseOp);
      hasNext = r.hasNext;
      if (!ops.length && page > 1) {
        page -= 1;
        return refreshList();
      }
    }
    // The list never opens an operation by itself: the detail shows what was asked for (a
    // click, a route, a run just started), so a poll cannot swap it under the reader's eyes.
    renderList(ops);
    $("#ops-page").textContent = `Page ${page}`;
    $("#ops-prev").disabled = page <= 1;
    $("#ops-next").disabled = !hasNext;
  } catch (err) {
    if (Date.now() - lastErrorShown > 60000) {
      lastErrorShown = Date.now();
      showError(err, "Loading operations");
    }
  }
}

/** Seconds since a running operation started (its duration is only known at the end). */
function elapsed(op) {
  const t = Date.parse(op.started);
  return ACTIVE.has(op.status) && Number.isFinite(t) ? Math.max(0, (Date.now() - t) / 1000) : null;
}

function flagsLine(flags) {
  return flagEntries(flags).map(([script, text]) => `${script} ${text}`).join(" · ");
}

function renderList(ops) {
  $("#ops-empty").hidden = ops.length > 0;
  $("#ops-empty").textContent = listMode === "active" ? "No operation is running." : "No operations match.";
  replaceKeepingFocus($("#ops-table tbody"),
    ...ops.map((op) => {
      const view = h("button", { class: "btn btn-small", type: "button", text: "View", "aria-label": `View ${op.id}`, dataset: { focus: `view:${op.id}` } });
      view.addEventListener("click", () => openOperation(op.id));
      const stop = ACTIVE.has(op.status)
        ? h("button", { class: "btn btn-small btn-danger", type: "button", text: "Stop", "aria-label": `Stop ${op.id}`, dataset: { focus: `stop:${op.id}` } })
        : null;
      if (stop) stop.addEventListener("click", () => confirmStop(op.id, stop));
      const targets = op.targets.length > 3
        ? `${op.targets.slice(0, 3).join(", ")} +${op.targets.length - 3}`
        : op.targets.join(", ");
      const flags = flagsLine(op.flags);
      const names = op.scripts.map(scriptName).join(", ");
      const tr = h(
        "tr",
        { dataset: { op: op.id }, class: `row-link${current && current.id === op.id ? " row-selected" : ""}` },
        h("td", {}, h("span", { class: `dot dot-${statusKind(op.status)}` }), " ", h("span", { text: op.status })),
        h("td", { class: "mono" }, op.id, lineageNodes(op.parent, op.children)),
        h("td", { class: "cell-scripts", title: op.scripts.join(", ") },
          h("span", { class: "op-scripts", text: names }),
          flags ? h("span", { class: "op-flags mono small muted", text: flags, title: flags }) : null),
        h("td", { text: targets, title: op.targets.join(", ") }),
        h("td", { text: relTime(op.started), title: op.started || "" }),
        h("td", { class: "num", text: fmtDuration(op.duration ?? elapsed(op)) }),
        h("td", { class: "muted", text: op.by || "—" }),
        h("td", { class: "cell-actions" }, view, stop),
      );
      // The whole row opens the operation; the buttons keep their own meaning.
      tr.addEventListener("click", (ev) => {
        if (!ev.target.closest("button, a, input")) openOperation(op.id);
      });
      return tr;
    }),
  );
}

// ---- live output --------------------------------------------------------------------------

function setCurrentStatus(status) {
  current.status = status;
  const s = String(status).toLowerCase();
  $("#op-live-status").replaceChildren(badge(s, statusKind(s)));
  $("#op-stop").disabled = !ACTIVE.has(s);
  if (current.groups) current.groups.setStatus(s);
  if (!ACTIVE.has(s) && !current.endedAt) current.endedAt = Date.now();
  renderSummary();
}

function closeCurrent() {
  if (!current) return;
  if (current.source) current.source.close();
  current.log.destroy();
  current.groups.destroy();
  current = null;
  clearInterval(tick);
  tick = null;
}

async function loadCatalogue() {
  try {
    catalogue = await store.scripts();
  } catch {
    // names and estimates are cosmetic; ids are enough to render
  }
}

/**
 * Show operation `id`. Running operations are followed over SSE (which replays from the
 * start); finished ones are rendered from GET /api/operations/{id} logs. `known` lets the run
 * form pass scripts/targets/flags so the QUEUED headers appear before the first event.
 * The URL becomes #operations/<id> (a new history entry unless `replace` or it came from the
 * URL itself).
 */
export async function openOperation(id, known = null, { fromRoute = false, replace = false } = {}) {
  wanted = id;
  if (!fromRoute && ctx) ctx.setRoute("operations", id, { replace });
  try {
    await openOperationNow(id, known);
  } finally {
    if (wanted === id) wanted = null;
  }
}

async function openOperationNow(id, known) {
  closeCurrent();
  $("#op-live-title").textContent = `Output · ${id}`;
  $("#op-download").disabled = false;
  let detail = null;
  if (!known) {
    try {
      detail = await api.operation(id);
    } catch (err) {
      showError(err, `Loading ${id}`);
      return;
    }
  }
  if (wanted !== id) return; // another operation was asked for meanwhile
  await loadCatalogue();
  const src = known || detail;
  const scriptIds = parseList(src.scripts).map((s) => (typeof s === "object" ? s.id : s));
  const scripts = scriptIds.map((sid) => ({ id: sid, name: scriptName(sid) }));
  const targets = parseList(src.targets).map((t) => (typeof t === "object" ? t.id : t));
  const log = new OpLog($("#op-live-body"), {
    id, scripts, targets, onChange: () => renderSummary(), onSearch: showMatches,
    fetchPage: (target, script, stream, offset, limit) =>
      api.taskOutput(id, target, script, stream, offset, limit),
  });
  const started = Date.parse((detail && (detail.started || detail.created)) || "");
  const ended = Date.parse((detail && detail.ended) || "");
  const groups = new OpGroups($("#op-groups"), {
    id, scripts, targets, status: detail ? detail.status : "queued",
    onOpen: (next) => {
      openOperation(next);
      refreshList();
    },
  });
  current = {
    id, status: "queued", log, groups, source: null,
    scripts: scriptIds, targets,
    flags: (src.flags && typeof src.flags === "object") ? src.flags : {},
    concurrency: Number(src.concurrency) || null,
    by: (detail && detail.triggered_by) || (known && ((window.__linkops.user || {}).username)) || "",
    startedAt: Number.isFinite(started) ? started : Date.now(),
    endedAt: Number.isFinite(ended) ? ended : null,
    duration: detail && detail.duration != null ? Number(detail.duration) : null,
    parent: (detail && detail.parent) || null,
    children: (detail && Array.isArray(detail.children)) ? detail.children : [],
  };
  $("#op-live-title").textContent = `${id} · ${scripts.map((s) => s.name).join(", ")}`;
  $("#op-live-title").title = id;
  $("#op-rerun").disabled = false;
  $("#op-tools").hidden = false;
  renderMeta();
  setCurrentStatus(detail ? detail.status : "queued");
  applyOutputView();
  tick = setInterval(renderSummary, 1000);
  markSelectedRow();
  groups.load();
  if (detail && !ACTIVE.has(String(detail.status))) {
    renderStoredLogs(detail);
    return;
  }
  follow(id);
}

function markSelectedRow() {
  for (const tr of document.querySelectorAll("#ops-table tbody tr")) {
    tr.classList.toggle("row-selected", Boolean(current) && tr.dataset.op === current.id);
  }
}

/** What the operation ran: scripts (names, ids), flags per script, targets, who, when. */
function renderMeta() {
  const c = current;
  const flagsBy = new Map(flagEntries(c.flags));
  const parts = c.scripts.map((sid, i) => h("span", { class: "meta-script" },
    h("span", { class: "meta-index", text: `${i + 1}` }),
    h("span", { text: scriptName(sid) }),
    scriptName(sid) !== sid ? h("span", { class: "mono muted small", text: ` ${sid}` }) : null,
    flagsBy.has(sid) ? h("code", { class: "meta-flags", text: flagsBy.get(sid) }) : null));
  $("#op-meta").replaceChildren(
    h("div", { class: "meta-scripts" }, ...parts,
      flagsBy.size ? null : h("span", { class: "muted small meta-noflags", text: "no flags" })),
    h("div", { class: "meta-line muted small" },
      `on ${c.targets.length} target${c.targets.length === 1 ? "" : "s"} (${c.targets.join(", ")})`,
      c.concurrency ? ` · concurrency ${c.concurrency}` : "",
      c.by ? ` · by ${c.by}` : "",
      ` · started ${fmtTime(c.startedAt)}`),
    ...[lineageNodes(c.parent, c.children)].filter(Boolean).map((n) => h("div", { class: "meta-line meta-lineage" }, n)),
  );
  $("#op-meta").hidden = false;
}

/** Seconds left, from the scripts' estimatedDuration (null when nothing is left or known). */
function estimateLeft(c) {
  const perTarget = new Map();
  let unknown = false;
  for (const t of c.log.taskList()) {
    if (t.status !== "RUNNING" && t.status !== "QUEUED") continue;
    const est = scriptEstimate(t.script);
    if (est === null) {
      unknown = true;
      continue;
    }
    const left = t.status === "RUNNING" && t.startedAt ? Math.max(0, est - (Date.now() - t.startedAt) / 1000) : est;
    perTarget.set(t.target, (perTarget.get(t.target) || 0) + left);
  }
  const values = [...perTarget.values()];
  if (!values.length) return unknown ? { seconds: null } : null;
  const total = values.reduce((a, b) => a + b, 0);
  const lanes = Math.max(1, Math.min(c.concurrency || values.length, values.length));
  return { seconds: Math.max(Math.max(...values), total / lanes) };
}

/** Progress bar pieces: ok green, failed red, stopped/skipped amber, running blue. */
function segments(n) {
  const part = (count, kind) => (count && n.total
    ? h("span", { class: `progress-fill fill-${kind}`, style: { width: `${(count / n.total) * 100}%` } })
    : null);
  return [part(n.ok, "ok"), part(n.failed, "bad"), part(n.stopped + n.skipped, "warn"), part(n.running, "info")]
    .filter(Boolean);
}

/** The strip under the header: counts per status, progress bar, ETA and duration. */
function renderSummary() {
  const c = current;
  if (!c) return;
  const n = c.log.counts();
  const done = n.ok + n.failed + n.skipped + n.stopped;
  const active = ACTIVE.has(String(c.status));
  const seconds = c.duration !== null && !active
    ? c.duration
    : ((c.endedAt || Date.now()) - c.startedAt) / 1000;
  const item = (key, label, kind) => h("span", {
    class: `sum-item sum-${kind}${n[key] ? "" : " sum-zero"}`, dataset: { count: key },
  }, h("b", { text: String(n[key]) }), ` ${label}`);
  let eta = "";
  if (active) {
    const left = estimateLeft(c);
    if (left && left.seconds !== null) eta = left.seconds > 0 ? `ETA ~${fmtDuration(Math.ceil(left.seconds))}` : "ETA overdue";
    else if (left) eta = "ETA unknown";
  }
  // (native replaceChildren would print a null as "null": filter the optional parts out)
  $("#op-summary").replaceChildren(...[
    item("ok", "ok", "ok"),
    item("failed", "failed", "bad"),
    item("running", "running", "info"),
    item("queued", "queued", "muted"),
    item("skipped", "skipped", "warn"),
    n.stopped ? item("stopped", "stopped", "warn") : null,
    h("span", {
      class: "progress", role: "progressbar", "aria-label": "Tasks finished",
      "aria-valuemin": "0", "aria-valuemax": String(n.total), "aria-valuenow": String(done),
      title: `${done} of ${n.total} tasks finished`,
    }, ...segments(n)),
    h("span", { class: "sum-pct muted small", text: `${done}/${n.total}` }),
    eta ? h("span", { class: "sum-eta small", id: "op-eta", text: eta, title: "From the scripts' estimatedDuration" }) : null,
    h("span", { class: "sum-duration mono small", id: "op-duration", text: fmtDuration(Math.max(0, seconds)), title: active ? "Running for" : "Took" }),
  ].filter(Boolean));
  $("#op-summary").hidden = false;
  if (!active) {
    clearInterval(tick);
    tick = null;
  }
}

function applyOutputView() {
  if (!current) return;
  const query = $("#op-search").value.trim();
  showMatches(current.log.setView({ query, failedOnly: $("#op-failed-only").checked }));
}

/** The match count; a search sees what is in the browser: heads, opened logs, live output. */
function showMatches(matches) {
  if (!current) return;
  const query = $("#op-search").value.trim();
  const partial = current.log.partial() ? " in the loaded output" : "";
  $("#op-search-count").textContent = query ? `${matches} match${matches === 1 ? "" : "es"}${partial}` : "";
}

function runAgain() {
  if (!current) return;
  prefillRunForm({
    scripts: current.scripts, flags: current.flags, targets: current.targets,
    concurrency: current.concurrency, from: current.id,
  });
}

// Small operations open every log whole; big ones show each log's head until it is opened
// (the view carries heads and sizes only; OpLog pages the rest in as it is scrolled to).
const OPEN_LOGS_UP_TO = 10;

function renderStoredLogs(detail) {
  const logs = detail.logs || [];
  const open = logs.length <= OPEN_LOGS_UP_TO;
  for (const entry of logs) current.log.setStored(entry, { open });
  current.log.finish(detail.status);
  renderSummary();
}

async function downloadCurrent() {
  if (!current) return;
  const mine = current;
  const btn = $("#op-download");
  btn.disabled = true;
  try {
    const text = await mine.log.fullText(); // pages in the logs that are not loaded yet
    downloadText(`${mine.id}.log`, text);
  } catch (err) {
    showError(err, `Downloading the output of ${mine.id}`);
  } finally {
    btn.disabled = false;
  }
}

function follow(id) {
  const mine = current;
  const source = new EventSource(api.operationEventsUrl(id));
  mine.source = source;
  const parse = (ev) => {
    try {
      return JSON.parse(ev.data);
    } catch {
      return {};
    }
  };
  source.addEventListener("operation", (ev) => {
    const d = parse(ev);
    if (current !== mine) return;
    const started = Date.parse(d.started || "");
    if (Number.isFinite(started)) mine.startedAt = started;
    if (d.flags && typeof d.flags === "object") mine.flags = d.flags;
    if (d.concurrency) mine.concurrency = Number(d.concurrency);
    renderMeta();
    if (d.status) setCurrentStatus(d.status);
  });
  source.addEventListener("task_start", (ev) => {
    const d = parse(ev);
    mine.log.setStatus(d.target, d.script, "RUNNING", null, d.name);
    if (current === mine && mine.status === "queued") setCurrentStatus("running");
  });
  source.addEventListener("output", (ev) => {
    const d = parse(ev);
    mine.log.append(d.target, d.script, d.stream || "stdout", d.data || "");
  });
  source.addEventListener("task_end", (ev) => {
    const d = parse(ev);
    mine.log.setStatus(d.target, d.script, d.status || (d.exit_code === 0 ? "SUCCESS" : "FAILED"), d.exit_code);
  });
  source.addEventListener("groups", (ev) => {
    if (current === mine) mine.groups.applyEvent(parse(ev));
  });
  source.addEventListener("operation_end", (ev) => {
    const d = parse(ev);
    // The stream ends after this event; closing stops EventSource from reconnecting.
    source.close();
    mine.log.finish(d.status);
    if (current === mine) {
      if (d.duration != null) mine.duration = Number(d.duration);
      setCurrentStatus(d.status || "success");
      refreshList();
    }
  });
  source.addEventListener("error", async () => {
    if (current !== mine) return;
    if (source.readyState === EventSource.CONNECTING) {
      $("#op-live-status").replaceChildren(badge("reconnecting…", "warn"));
      return; // EventSource resumes with Last-Event-ID on its own
    }
    // Closed by the server without operation_end (or refused): fall back to the stored record.
    try {
      const detail = await api.operation(mine.id);
      if (current !== mine) return;
      setCurrentStatus(detail.status);
      if (!ACTIVE.has(String(detail.status))) {
        mine.log.finish(detail.status);
      } else {
        toast(`Live output of ${mine.id} was interrupted`, "error", "Reopen the operation to resume.");
      }
    } catch (err) {
      showError(err, `Following ${mine.id}`);
    }
  });
}

/** Stop only after the operator confirmed it (Stop cannot be undone). */
async function confirmStop(id, btn) {
  const ok = await confirmAction({
    title: `Stop ${id}?`,
    message: "Running scripts are killed on their hosts; tasks that have not started yet are skipped. This cannot be undone.",
    confirm: "Stop operation",
  });
  if (ok) await stopOperation(id, btn);
  else if (btn && document.contains(btn)) btn.focus();
}

async function stopOperation(id, btn) {
  if (btn) btn.disabled = true;
  try {
    await api.stopOperation(id);
    toast(`Stop requested for ${id}`, "ok");
  } catch (err) {
    showError(err, `Stop ${id}`);
    if (btn) btn.disabled = false;
  }
  refreshList();
}

function stopCurrent() {
  if (current) confirmStop(current.id, $("#op-stop"));
}
