// Operations tab: active/history lists, the run form (runform.js) and the live output of one
// operation (SSE stream rendered by OpLog; finished operations from their stored logs).

import * as api from "./api.js";
import {
  $, badge, downloadText, fmtDuration, h, relTime, replaceKeepingFocus, showError, statusKind, toast,
} from "./dom.js";
import { OpLog, taskStatus } from "./oplog.js";
import { initRunForm, refreshRunForm } from "./runform.js";
import { store } from "./store.js";

const POLL_MS = 4000;
const PAGE_SIZE = 15;
const ACTIVE = new Set(["queued", "running"]);

let listMode = "active";
let page = 1;
let timer = null;
let lastErrorShown = 0;

// The operation shown in the output pane.
let current = null; // {id, status, log: OpLog, source: EventSource|null}

export function init() {
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
  $("#op-download").addEventListener("click", () => {
    if (current) downloadText(`${current.id}.log`, current.log.fullText());
  });
  initRunForm({
    onStarted: (id, op) => {
      openOperation(id, op);
      refreshList();
    },
  });
}

export function show() {
  refreshRunForm();
  refreshList();
  if (!timer) timer = setInterval(refreshList, POLL_MS);
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
    duration: r.duration ?? null,
    by: r.triggered_by || "",
  };
}

async function refreshList() {
  if (document.hidden) return;
  const status = $("#ops-status").value;
  try {
    // Active = queued + running (a status filter narrows it); history = everything else.
    const ended = "success,failed,partial,stopped,interrupted";
    const wanted = listMode === "active"
      ? (ACTIVE.has(status) ? status : status ? "none" : "queued,running")
      : (status && !ACTIVE.has(status) ? status : status ? "none" : ended);
    let ops = [];
    let hasNext = false;
    if (wanted !== "none") {
      const r = await api.operations({ status: wanted, page, pageSize: PAGE_SIZE });
      ops = r.operations.map(normaliseOp);
      hasNext = r.hasNext;
      if (!ops.length && page > 1) {
        page -= 1;
        return refreshList();
      }
    }
    renderList(ops);
    // Nothing shown yet and something is running: follow it, that is what one came to see.
    if (!current && !opening && listMode === "active" && ops.length) openOperation(ops[0].id);
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
      if (stop) stop.addEventListener("click", () => stopOperation(op.id, stop));
      const targets = op.targets.length > 3
        ? `${op.targets.slice(0, 3).join(", ")} +${op.targets.length - 3}`
        : op.targets.join(", ");
      return h(
        "tr",
        { dataset: { op: op.id }, class: current && current.id === op.id ? "row-selected" : null },
        h("td", {}, h("span", { class: `dot dot-${statusKind(op.status)}` }), " ", h("span", { text: op.status })),
        h("td", { class: "mono", text: op.id }),
        h("td", { text: op.scripts.join(", ") }),
        h("td", { text: targets, title: op.targets.join(", ") }),
        h("td", { text: relTime(op.started), title: op.started || "" }),
        h("td", { class: "num", text: fmtDuration(op.duration ?? elapsed(op)) }),
        h("td", { class: "muted", text: op.by || "—" }),
        h("td", { class: "cell-actions" }, view, stop),
      );
    }),
  );
}

// ---- live output --------------------------------------------------------------------------

function setCurrentStatus(status) {
  current.status = status;
  const s = String(status).toLowerCase();
  $("#op-live-status").replaceChildren(badge(s, statusKind(s)));
  $("#op-stop").disabled = !ACTIVE.has(s);
}

function closeCurrent() {
  if (!current) return;
  if (current.source) current.source.close();
  current.log.destroy();
  current = null;
}

async function scriptMeta(ids) {
  let catalogue = [];
  try {
    catalogue = await store.scripts();
  } catch {
    catalogue = []; // names are cosmetic; ids are enough to render
  }
  return ids.map((id) => {
    const found = catalogue.find((s) => s.id === id);
    return { id, name: found ? found.name : id };
  });
}

/**
 * Show operation `id`. Running operations are followed over SSE (which replays from the
 * start); finished ones are rendered from GET /api/operations/{id} logs. `known` lets the run
 * form pass scripts/targets so the QUEUED headers appear before the first event.
 */
let opening = false;

export async function openOperation(id, known = null) {
  opening = true;
  try {
    await openOperationNow(id, known);
  } finally {
    opening = false;
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
  const src = known || detail;
  const scripts = await scriptMeta(parseList(src.scripts).map((s) => (typeof s === "object" ? s.id : s)));
  const targets = parseList(src.targets).map((t) => (typeof t === "object" ? t.id : t));
  const log = new OpLog($("#op-live-body"), { id, scripts, targets });
  current = { id, status: "queued", log, source: null };
  setCurrentStatus(detail ? detail.status : "queued");
  if (detail && !ACTIVE.has(String(detail.status))) {
    await renderStoredLogs(detail);
    return;
  }
  follow(id);
}

// The view carries each log's head and size only; the whole kept output is paged in.
async function fetchWholeOutput(id, entry, stream) {
  const size = entry[`${stream}_bytes`];
  const head = entry[`${stream}_head`] || "";
  if (!size || new TextEncoder().encode(head).length >= size) return head;
  const parts = [];
  let offset = 0;
  while (offset !== null && offset !== undefined) {
    const page = await api.taskOutput(id, entry.target, entry.script, stream, offset);
    parts.push(page.data || "");
    offset = page.next_offset;
  }
  return parts.join("");
}

async function renderStoredLogs(detail) {
  const mine = current;
  for (const entry of detail.logs || []) {
    const { target, script } = entry;
    for (const stream of ["stdout", "stderr"]) {
      let text;
      try {
        text = await fetchWholeOutput(detail.id, entry, stream);
      } catch (err) {
        showError(err, `Loading the output of ${target}`);
        text = entry[`${stream}_head`] || "";
      }
      if (current !== mine) return; // another operation was opened meanwhile
      if (text) mine.log.append(target, script, stream, text);
    }
    mine.log.setStatus(target, script, taskStatus(entry.status), entry.exit_code);
  }
  mine.log.finish(detail.status);
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
    if (d.status && current === mine) setCurrentStatus(d.status);
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
  source.addEventListener("operation_end", (ev) => {
    const d = parse(ev);
    // The stream ends after this event; closing stops EventSource from reconnecting.
    source.close();
    mine.log.finish(d.status);
    if (current === mine) {
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
  if (current) stopOperation(current.id, $("#op-stop"));
}
