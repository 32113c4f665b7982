// Renders one operation's output grouped per target and script, virtualised at two levels so a
// 500-target operation with 20,000-line logs keeps only what is on screen in the DOM:
//
// 1. The task list. Every target is a header row followed by one row per task (script). Row
//    heights are computed from the model (fixed pixel sizes: a header line, a pane of at most
//    PANE_LINES lines of LINE_H px, a status bar), so the offsets are a prefix sum and the
//    rows near the viewport are found by binary search; only those are in the DOM, placed in
//    an absolutely positioned wrapper per target inside a canvas as tall as the whole list.
// 2. The lines of one log. A task's pane (`pre.task-output`) scrolls on its own; its content
//    is a spacer as tall as all lines and one window holding only the lines in view (plus an
//    overscan), built from a line index kept per chunk of text (`Lines`).
//
// A finished operation's view carries only the *head* of each log and its size: a task shows
// its head; "Show all" (or opening a small operation) switches it to the whole log, paged in
// from GET …/tasks/{target}/{script}/output as the window scrolls into what is not loaded yet.
// Live output (SSE) is appended in memory and drawn once per animation frame; a pane that is
// scrolled to its bottom follows the tail. See docs/frontend.md, "Virtualised output".
//
// Header line per task: "[Package #] - [PACKAGE NAME] - [SCRIPT NAME] - [STATUS]" where the
// package # is the script's 1-based position in the operation, the package name is the
// script's display name and the script name its id.

import { h } from "./dom.js";

/** At most this many lines of one log are in the DOM at a time (the window). */
export const MAX_DOM_LINES = 200;
export const LINE_H = 17; // px, = .task-output line-height (css: "virtualised output")
export const PANE_LINES = 20; // a pane is at most this many lines tall
const PANE_PAD = 8; // vertical padding of a pane
const TASK_HEAD_H = 28;
const BAR_H = 24; // "Show all" / loading / truncated bars
const GROUP_H = 38; // target header row (8 px gap + 30 px bar)
const OVERSCAN_PX = 400; // rows drawn above and below the viewport
const OVERSCAN_LINES = 40; // lines drawn above and below a pane's viewport
const MIN_PAGE = 65536;
const MAX_PAGE = 1048576; // the server's cap
const MAX_HIGHLIGHTS = 2000;
const FINAL = new Set(["SUCCESS", "FAILED", "STOPPED", "TIMEOUT", "SKIPPED"]);

/** Statuses that count as failed in the summary and the "failed only" filter. */
export const FAILED_STATUSES = new Set(["FAILED", "TIMEOUT"]);

const utf8 = new TextEncoder();
const byteLength = (text) => utf8.encode(text).length;

function countMatches(text, q) {
  let n = 0;
  for (let i = text.indexOf(q); i !== -1; i = text.indexOf(q, i + q.length)) n += 1;
  return n;
}

const fmtBytes = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB`
  : n >= 1024 ? `${Math.round(n / 1024)} KB` : `${n} B`);

/**
 * Make `parent`'s children exactly `children`, in order, moving as little as possible: rows
 * that stay in view are neither detached nor restyled (a scroll step adds and removes rows
 * at the edges only).
 */
function sync(parent, children) {
  const kids = parent.children;
  if (kids.length === children.length && children.every((c, i) => kids[i] === c)) return;
  const want = new Set(children);
  for (const c of [...kids]) if (!want.has(c)) c.remove();
  let ref = parent.firstElementChild;
  for (const c of children) {
    if (c === ref) ref = ref.nextElementSibling;
    else parent.insertBefore(c, ref);
  }
}

/** Map server task statuses to the header vocabulary. */
export function taskStatus(status) {
  const s = String(status || "").toUpperCase();
  if (s === "SUCCEEDED" || s === "OK" || s === "COMPLETED") return "SUCCESS";
  if (s === "TIMED_OUT" || s === "TIMEDOUT") return "TIMEOUT";
  if (s === "ERROR" || s === "FAILURE") return "FAILED";
  if (s === "PENDING") return "QUEUED";
  if (s === "INTERRUPTED") return "STOPPED";
  return s || "QUEUED";
}

/**
 * The text of one log as chunks of whole lines with a line index each, plus the unfinished
 * last line. `line i` is found by binary search over the chunks' first line numbers; a range
 * of lines comes out as one string per chunk (and stream), so drawing 200 lines is a handful
 * of text nodes.
 */
export class Lines {
  constructor() {
    this.chunks = []; // {text, stream, starts: number[], first}
    this.count = 0; // whole lines in chunks
    this.tail = ""; // the last line, not ended by "\n" yet
    this.tailStream = "stdout";
    this.version = 0;
  }

  get total() {
    return this.count + (this.tail ? 1 : 0);
  }

  push(stream, text) {
    if (!text) return;
    this.version += 1;
    if (this.tail && stream !== this.tailStream) {
      // Another stream starts while a line is unfinished: that line ends here.
      this.addWhole(this.tailStream, `${this.tail}\n`);
      this.tail = "";
    }
    const data = this.tail + text;
    this.tailStream = stream;
    const cut = data.lastIndexOf("\n") + 1;
    if (cut > 0) this.addWhole(stream, data.slice(0, cut));
    this.tail = data.slice(cut);
  }

  addWhole(stream, text) {
    const last = this.chunks[this.chunks.length - 1];
    let chunk = last;
    if (!last || last.stream !== stream || last.text.length > 262144) {
      chunk = { text: "", stream, starts: [], first: this.count };
      this.chunks.push(chunk);
    }
    const base = chunk.text.length;
    let start = 0;
    for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) {
      chunk.starts.push(base + start);
      start = i + 1;
      this.count += 1;
    }
    chunk.text += text;
  }

  chunkAt(line) {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid].first <= line) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Lines [from, to) as [{stream, text}] (consecutive lines of one chunk in one piece). */
  slice(from, to) {
    const out = [];
    const end = Math.min(to, this.count);
    for (let c = this.chunks.length ? this.chunkAt(from) : 0; c < this.chunks.length; c += 1) {
      const chunk = this.chunks[c];
      if (chunk.first >= end) break;
      const a = Math.max(from, chunk.first) - chunk.first;
      const b = Math.min(end, chunk.first + chunk.starts.length) - chunk.first;
      if (b <= a) continue;
      const stop = b < chunk.starts.length ? chunk.starts[b] : chunk.text.length;
      out.push({ stream: chunk.stream, text: chunk.text.slice(chunk.starts[a], stop) });
    }
    if (this.tail && to > this.count && from <= this.count) {
      out.push({ stream: this.tailStream, text: this.tail });
    }
    return out;
  }

  text() {
    return this.chunks.map((c) => c.text).join("") + this.tail;
  }

  matches(q) {
    let n = countMatches(this.tail.toLowerCase(), q);
    for (const c of this.chunks) n += countMatches(c.text.toLowerCase(), q);
    return n;
  }
}

export class OpLog {
  /**
   * @param {HTMLElement} container  the scroll viewport; emptied and filled with the tasks
   * @param {{id: string, scripts: {id: string, name: string}[], targets: string[],
   *          onChange?: () => void, onSearch?: (matches: number) => void,
   *          fetchPage?: (target, script, stream, offset, limit) => Promise<object>}} op
   *   `fetchPage` answers like GET …/tasks/{target}/{script}/output (data, next_offset, …).
   */
  constructor(container, op) {
    this.container = container;
    this.op = op;
    this.fetchPage = op.fetchPage || null;
    this.tasks = new Map(); // `${target}\u0000${script}` -> task
    this.groups = new Map(); // target -> group
    this.dirty = new Set(); // tasks with queued output
    this.headersDue = new Set(); // tasks whose header waits for their queued output
    this.frame = 0;
    this.destroyed = false;
    this.view = { query: "", failedOnly: false };
    this.onChange = op.onChange || (() => {});
    this.onSearch = op.onSearch || (() => {}); // (matches) after new output re-applied a search
    this.changeQueued = false;
    this.viewTimer = 0;
    this.rows = []; // [{kind: "group"|"task", group|task}]
    this.tops = new Float64Array(1);
    this.rowsDirty = true;
    this.heightsDirty = true;
    this.shownGroups = [];
    this.matchCount = 0;
    this.canvas = h("div", { class: "ol-canvas" });
    container.classList.add("oplog");
    container.replaceChildren(this.canvas);
    this.onScroll = (ev) => this.scrolled(ev);
    container.addEventListener("scroll", this.onScroll, { capture: true, passive: true });
    if (typeof ResizeObserver === "function") {
      this.resize = new ResizeObserver(() => this.schedule());
      this.resize.observe(container);
    }
    for (const target of op.targets) {
      for (const script of op.scripts) this.task(target, script.id);
    }
    this.schedule();
  }

  // ---- model ----------------------------------------------------------------------------

  scriptIndex(scriptId) {
    const i = this.op.scripts.findIndex((s) => s.id === scriptId);
    if (i >= 0) return i;
    this.op.scripts.push({ id: scriptId, name: scriptId });
    return this.op.scripts.length - 1;
  }

  group(target) {
    let g = this.groups.get(target);
    if (g) return g;
    g = { target, tasks: [], collapsed: false, el: null, head: null, summary: null, toggle: null };
    this.groups.set(target, g);
    this.rowsDirty = true;
    return g;
  }

  task(target, scriptId) {
    const key = `${target}\u0000${scriptId}`;
    let t = this.tasks.get(key);
    if (t) return t;
    const index = this.scriptIndex(scriptId);
    const script = this.op.scripts[index];
    t = {
      key, target, script: scriptId, index, name: script.name, status: "QUEUED", exitCode: null,
      lines: new Lines(), pending: [], remote: null, mode: "all", truncated: false,
      collapsed: false, loading: false, error: "", want: 0, stick: true, scrollTop: 0,
      el: null, win: null, winKey: "", attached: false,
    };
    this.tasks.set(key, t);
    // Keep tasks of one target in script order even when events arrive out of order.
    const g = this.group(target);
    const at = g.tasks.findIndex((o) => o.index > index);
    if (at < 0) g.tasks.push(t);
    else g.tasks.splice(at, 0, t);
    this.rowsDirty = true;
    this.schedule();
    return t;
  }

  /** Tasks per summary bucket: ok, failed, running, queued, skipped, stopped, total. */
  counts() {
    const c = { ok: 0, failed: 0, running: 0, queued: 0, skipped: 0, stopped: 0, total: 0 };
    for (const t of this.tasks.values()) {
      c.total += 1;
      if (t.status === "SUCCESS") c.ok += 1;
      else if (FAILED_STATUSES.has(t.status)) c.failed += 1;
      else if (t.status === "RUNNING") c.running += 1;
      else if (t.status === "SKIPPED") c.skipped += 1;
      else if (t.status === "STOPPED") c.stopped += 1;
      else c.queued += 1;
    }
    return c;
  }

  /** The tasks themselves (read-only use: ETA, counts). */
  taskList() {
    return [...this.tasks.values()];
  }

  changed() {
    if (this.changeQueued) return;
    this.changeQueued = true;
    queueMicrotask(() => {
      this.changeQueued = false;
      if (!this.destroyed) this.onChange();
    });
  }

  setStatus(target, scriptId, status, exitCode, name) {
    const t = this.task(target, scriptId);
    if (name) t.name = name;
    t.status = taskStatus(status);
    if (t.status === "RUNNING" && !t.startedAt) t.startedAt = Date.now();
    if (exitCode !== undefined && exitCode !== null) t.exitCode = exitCode;
    this.renderHeader(t);
  }

  renderHeader(t) {
    if (this.dirty.has(t)) {
      // Output of this task waits for the next frame: its new status is painted in that
      // frame too, so a header never says SUCCESS above lines that are not drawn yet.
      this.headersDue.add(t);
      this.schedule();
    } else {
      this.paintHeader(t);
      this.renderSummary(this.groups.get(t.target));
    }
    if (this.view.failedOnly) {
      this.rowsDirty = true;
      this.schedule();
    }
    this.changed();
  }

  paintHeader(t) {
    if (t.el) {
      t.header.textContent = `[${t.index + 1}] - [${t.name}] - [${t.script}] - [${t.status}]`;
      t.header.className = `task-header status-${t.status.toLowerCase()}`;
      t.header.dataset.status = t.status;
      t.exit.textContent = t.exitCode === null || t.exitCode === undefined ? "" : `exit ${t.exitCode}`;
    }
  }

  renderSummary(g) {
    if (!g || !g.summary) return;
    const counts = {};
    for (const t of g.tasks) counts[t.status] = (counts[t.status] || 0) + 1;
    g.summary.textContent = Object.entries(counts).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(" · ");
  }

  /** Live output (SSE): kept in memory, drawn at the next animation frame. */
  append(target, scriptId, stream, data) {
    if (!data) return;
    const t = this.task(target, scriptId);
    t.pending.push(stream === "stderr" ? "stderr" : "stdout", data);
    this.dirty.add(t);
    this.schedule();
  }

  /**
   * A finished task from GET /api/operations/{id}: its heads and sizes. The head is shown;
   * the rest is paged in once the task is opened (`open: true` opens it at once).
   */
  setStored(entry, { open = false } = {}) {
    const t = this.task(entry.target, entry.script);
    const streams = ["stdout", "stderr"].map((name) => {
      const head = String(entry[`${name}_head`] || "");
      const size = Number(entry[`${name}_bytes`]) || 0;
      return { name, head, size, complete: byteLength(head) >= size, next: 0 };
    });
    t.lines = new Lines();
    for (const s of streams) t.lines.push(s.name, s.head);
    t.truncated = Boolean(entry.output_truncated);
    t.stick = false;
    t.scrollTop = 0;
    t.winKey = "";
    if (streams.every((s) => s.complete)) {
      t.remote = null;
      t.mode = "all";
    } else {
      const headBytes = streams.reduce((n, s) => n + byteLength(s.head), 0);
      t.remote = {
        streams, si: 0, started: false, fresh: null, bytes: 0,
        size: streams.reduce((n, s) => n + s.size, 0),
        headAvg: t.lines.total ? Math.max(1, headBytes / t.lines.total) : 40,
      };
      t.mode = open ? "open" : "head";
    }
    this.heightsDirty = true;
    this.setStatus(entry.target, entry.script, taskStatus(entry.status), entry.exit_code);
  }

  /** Open a task's whole log (the "Show all" button). */
  open(t) {
    if (t.error) {
      // "Retry" after a page failed to load (never retried on its own: no request storm).
      t.error = "";
      this.schedule();
      return;
    }
    if (t.mode !== "head") return;
    t.mode = "open";
    t.collapsed = false;
    this.heightsDirty = true;
    this.schedule();
  }

  /** Lines a pane scrolls over: what is loaded, plus an estimate of what is not. */
  displayLines(t) {
    const r = t.remote;
    if (!r || t.mode === "head") return t.lines.total;
    const avg = r.bytes > 0 && t.lines.count > 0 ? r.bytes / t.lines.count : r.headAvg;
    if (!r.started) return Math.max(t.lines.total, Math.ceil(r.size / avg));
    let left = 0;
    for (let i = r.si; i < r.streams.length; i += 1) {
      const s = r.streams[i];
      left += s.complete ? byteLength(s.head) : s.size - s.next;
    }
    return t.lines.total + Math.ceil(left / avg);
  }

  paneLines(t) {
    return Math.min(this.displayLines(t), PANE_LINES);
  }

  taskHeight(t) {
    if (t.collapsed) return TASK_HEAD_H;
    const lines = this.paneLines(t);
    return TASK_HEAD_H + (lines ? lines * LINE_H + PANE_PAD : 0)
      + (t.remote ? BAR_H : 0) + (t.truncated ? BAR_H : 0);
  }

  /** Page in what the window needs (one request at a time per task, in stream order). */
  async load(t) {
    const r = t.remote;
    if (!r || t.loading || t.mode === "head" || !this.fetchPage) return;
    t.loading = true;
    this.paintBar(t);
    try {
      while (!this.destroyed && t.remote === r && r.si < r.streams.length
             && (!r.started || t.lines.total < t.want || r.streams[r.si].complete)) {
        const s = r.streams[r.si];
        const into = r.fresh || new Lines();
        if (s.complete) {
          into.push(s.name, s.head);
          r.si += 1;
        } else {
          const avg = r.bytes > 0 && into.count > 0 ? r.bytes / into.count : r.headAvg;
          const need = Math.max(0, t.want - into.total) * avg;
          const limit = Math.round(Math.min(MAX_PAGE, Math.max(MIN_PAGE, need + MIN_PAGE)));
          const page = await this.fetchPage(t.target, t.script, s.name, s.next, limit);
          if (this.destroyed || t.remote !== r) return;
          const data = String(page.data || "");
          const start = Number(page.offset) || s.next;
          const next = page.next_offset;
          r.bytes += next === null || next === undefined ? Math.max(0, (Number(page.total) || 0) - start)
            : next - start;
          into.push(s.name, data);
          if (next === null || next === undefined || !data) r.si += 1;
          else s.next = next;
        }
        if (!r.fresh) {
          // The first page replaces the heads (they are its beginning).
          r.fresh = into;
          r.started = true;
          t.lines = into;
        }
        t.winKey = "";
        this.heightsDirty = true;
        this.schedule();
        if (this.view.query) this.queueSearch();
      }
      if (r.si >= r.streams.length && t.remote === r) {
        t.remote = null;
        this.heightsDirty = true;
        this.schedule();
      }
    } catch (err) {
      t.error = `could not load the output: ${(err && err.message) || err}`;
    } finally {
      t.loading = false;
      if (t.el) this.paintBar(t);
    }
  }

  /**
   * Show only what the operator asked for: tasks whose header or output (what is in the
   * browser: heads, loaded pages, live output) contains `query`, matches highlighted with the
   * CSS Custom Highlight API, and/or only failed tasks. Returns the number of matches.
   */
  setView(view) {
    this.view = { ...this.view, ...view };
    return this.applyVisibility();
  }

  applyVisibility() {
    const q = this.view.query.toLowerCase();
    let matches = 0;
    for (const t of this.tasks.values()) {
      let show = !this.view.failedOnly || FAILED_STATUSES.has(t.status);
      if (show && q) {
        const header = `[${t.index + 1}] - [${t.name}] - [${t.script}] - [${t.status}] ${t.target}`;
        const n = t.lines.matches(q);
        matches += n;
        show = n > 0 || header.toLowerCase().includes(q);
      }
      t.shown = show;
    }
    this.matchCount = matches;
    this.rowsDirty = true;
    this.schedule();
    return matches;
  }

  /** True when some log is not loaded whole, so a search did not see all of it. */
  partial() {
    for (const t of this.tasks.values()) if (t.remote) return true;
    return false;
  }

  queueSearch() {
    // New output may match (or no longer hide) under an active search: re-apply, at most
    // every 300 ms so a flood of output does not re-scan everything each frame.
    if (this.viewTimer) return;
    this.viewTimer = setTimeout(() => {
      this.viewTimer = 0;
      if (!this.destroyed) this.onSearch(this.applyVisibility());
    }, 300);
  }

  /**
   * The operation ended: tasks that never started are SKIPPED — also after a stop, exactly as
   * the server records and counts them (result.tasks_skipped); only a task that was running
   * when the operation was stopped is STOPPED.
   */
  finish(opStatus) {
    const s = String(opStatus || "").toLowerCase();
    const stopped = s === "stopped" || s === "interrupted";
    for (const t of this.tasks.values()) {
      if (!FINAL.has(t.status)) {
        // A task still running when the operation ended lost its end event: say so plainly.
        t.status = t.status === "RUNNING" ? (stopped ? "STOPPED" : "FAILED") : "SKIPPED";
        this.renderHeader(t);
      }
    }
  }

  /** Everything, for download: live output from memory, the rest paged from the server. */
  async fullText() {
    const out = [`# Operation ${this.op.id}`, ""];
    const ordered = [...this.tasks.values()].sort((a, b) =>
      a.target === b.target ? a.index - b.index : a.target < b.target ? -1 : 1);
    for (const t of ordered) {
      out.push(`== ${t.target} :: [${t.index + 1}] - [${t.name}] - [${t.script}] - [${t.status}]` +
        (t.exitCode !== null ? ` exit ${t.exitCode}` : ""));
      out.push(t.remote ? await this.wholeRemote(t) : t.lines.text() + t.pending.filter((_, i) => i % 2).join(""));
    }
    return out.join("\n");
  }

  async wholeRemote(t) {
    const parts = [];
    for (const s of t.remote.streams) {
      if (s.complete || !this.fetchPage) {
        parts.push(s.head);
        continue;
      }
      let offset = 0;
      while (offset !== null && offset !== undefined) {
        const page = await this.fetchPage(t.target, t.script, s.name, offset, MAX_PAGE);
        parts.push(String(page.data || ""));
        offset = page.data ? page.next_offset : null;
      }
    }
    return parts.join("");
  }

  destroy() {
    this.destroyed = true;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    clearTimeout(this.viewTimer);
    this.container.removeEventListener("scroll", this.onScroll, { capture: true });
    if (this.resize) this.resize.disconnect();
    this.container.classList.remove("oplog");
    if (typeof CSS !== "undefined" && CSS.highlights) CSS.highlights.delete("oplog-match");
  }

  // ---- drawing --------------------------------------------------------------------------

  schedule() {
    if (!this.frame && !this.destroyed) this.frame = requestAnimationFrame(() => this.flush());
  }

  scrolled(ev) {
    if (ev.target !== this.container) {
      const pre = ev.target;
      const el = pre.closest && pre.closest(".task");
      const t = el && this.tasks.get(`${el.dataset.target}\u0000${el.dataset.script}`);
      if (t && pre.classList.contains("task-output")) {
        t.scrollTop = pre.scrollTop;
        t.stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - LINE_H / 2;
      }
    }
    this.schedule();
  }

  /** Once per animation frame: queued output into the line stores, then the visible rows. */
  flush() {
    this.frame = 0;
    if (this.destroyed) return;

    for (const t of this.dirty) {
      const before = this.paneLines(t);
      for (let i = 0; i < t.pending.length; i += 2) t.lines.push(t.pending[i], t.pending[i + 1]);
      t.pending = [];
      if (this.paneLines(t) !== before) this.heightsDirty = true;
    }
    const grew = this.dirty.size > 0;
    this.dirty.clear();
    if (grew && this.view.query) this.queueSearch();
    // Read the geometry first, then only write: a read after a write would force a layout.
    // (.oplog is position: relative, so this is the canvas's offset inside the scroller;
    // read once it is rendered — a hidden tab has no layout)
    if (this.offsetTop === undefined && this.canvas.offsetParent) this.offsetTop = this.canvas.offsetTop;
    const view = { top: this.container.scrollTop - (this.offsetTop || 0), height: this.container.clientHeight };
    this.layout();
    this.render(view);
    for (const t of this.headersDue) {
      this.paintHeader(t);
      this.renderSummary(this.groups.get(t.target));
    }
    this.headersDue.clear();
  }

  layout() {
    if (this.rowsDirty) {
      this.rows = [];
      for (const g of this.groups.values()) {
        const shown = g.tasks.filter((t) => t.shown !== false);
        if (!shown.length) continue;
        this.rows.push({ kind: "group", group: g });
        if (!g.collapsed) for (const t of shown) this.rows.push({ kind: "task", task: t });
      }
      this.rowsDirty = false;
      this.heightsDirty = true;
    }
    if (this.heightsDirty) {
      const tops = new Float64Array(this.rows.length + 1);
      for (let i = 0; i < this.rows.length; i += 1) {
        const r = this.rows[i];
        r.height = r.kind === "group" ? GROUP_H : this.taskHeight(r.task);
        tops[i + 1] = tops[i] + r.height;
      }
      this.tops = tops;
      this.canvas.style.height = `${tops[this.rows.length]}px`;
      this.heightsDirty = false;
    }
  }

  /** First row whose bottom is below `y`. */
  rowAt(y) {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.tops[mid + 1] <= y) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  render({ top, height }) {
    const from = this.rowAt(Math.max(0, top - OVERSCAN_PX));
    const bottom = top + height + OVERSCAN_PX;
    const wrappers = [];
    let current = null;
    for (let i = from; i < this.rows.length && this.tops[i] < bottom; i += 1) {
      const r = this.rows[i];
      const g = r.kind === "group" ? r.group : this.groups.get(r.task.target);
      if (!current || current.g !== g) {
        current = { g, top: this.tops[i], children: [] };
        wrappers.push(current);
      }
      if (r.kind === "group") current.children.push(this.groupHead(g));
      else current.children.push(this.taskEl(r.task, r.height));
    }
    const els = wrappers.map(({ g, top: y, children }) => {
      const el = this.groupEl(g);
      if (g.top !== y) el.style.top = `${y}px`;
      g.top = y;
      sync(el, children);
      return el;
    });
    sync(this.canvas, els);
    const attached = new Set();
    for (const w of wrappers) for (const t of w.g.tasks) if (t.el && t.el.parentNode === w.g.el) attached.add(t);
    const scrolls = [];
    for (const t of this.attachedTasks || []) if (!attached.has(t)) t.attached = false;
    for (const t of attached) {
      const to = this.renderPane(t, !t.attached);
      if (to !== null) scrolls.push([t, to]);
      t.attached = true;
    }
    this.attachedTasks = attached;
    // Scroll positions last (setting one needs a layout, but does not invalidate it).
    for (const [t, to] of scrolls) t.pre.scrollTop = to;
    this.highlight();
  }

  groupEl(g) {
    if (!g.el) g.el = h("div", { class: "target-group", dataset: { target: g.target } });
    return g.el;
  }

  groupHead(g) {
    if (!g.head) {
      g.toggle = h("button", {
        class: "ol-toggle", type: "button", "aria-expanded": "true",
        "aria-label": `Collapse ${g.target}`,
        onclick: () => {
          g.collapsed = !g.collapsed;
          g.toggle.setAttribute("aria-expanded", String(!g.collapsed));
          g.toggle.setAttribute("aria-label", `${g.collapsed ? "Expand" : "Collapse"} ${g.target}`);
          g.head.classList.toggle("collapsed", g.collapsed);
          this.rowsDirty = true;
          this.schedule();
        },
      });
      g.summary = h("span", { class: "target-summary muted" });
      g.head = h("div", { class: "ol-group-head" },
        h("div", { class: "ol-group-bar" }, g.toggle, h("span", { class: "target-name", text: g.target }), g.summary));
      this.renderSummary(g);
    }
    return g.head;
  }

  taskEl(t, height) {
    if (!t.el) {
      t.header = h("span", { class: "task-header status-queued", dataset: { status: "QUEUED" } });
      t.exit = h("span", { class: "task-exit muted" });
      t.toggle = h("button", {
        class: "ol-toggle", type: "button", "aria-expanded": "true",
        "aria-label": `Collapse the output of ${t.script} on ${t.target}`,
        onclick: () => {
          t.collapsed = !t.collapsed;
          t.toggle.setAttribute("aria-expanded", String(!t.collapsed));
          this.heightsDirty = true;
          this.schedule();
        },
      });
      t.marker = h("div", { class: "task-hidden", hidden: true,
        text: "… the middle of this output was cut when it was stored (output_buffer_size)" });
      t.win = h("div", { class: "ol-window" });
      t.spacer = h("div", { class: "ol-spacer" }, t.win);
      t.pre = h("pre", { class: "task-output", tabindex: "0", "aria-label": `Output of ${t.script} on ${t.target}` }, t.spacer);
      t.barText = h("span", { class: "ol-bar-text" });
      t.more = h("button", { class: "btn btn-small ol-more", type: "button", text: "Show all",
        "aria-label": `Show all output of ${t.script} on ${t.target}`, onclick: () => this.open(t) });
      t.bar = h("div", { class: "task-more" }, t.barText, t.more);
      t.el = h("div", { class: "task", dataset: { target: t.target, script: t.script } },
        h("div", { class: "task-head" }, t.toggle, t.header, t.exit), t.marker, t.pre, t.bar);
      this.paintHeader(t);
    }
    if (t.elH !== height) t.el.style.height = `${height}px`;
    t.elH = height;
    t.toggle.setAttribute("aria-expanded", String(!t.collapsed));
    t.marker.hidden = !t.truncated || t.collapsed;
    this.paintBar(t);
    return t.el;
  }

  paintBar(t) {
    if (!t.bar) return;
    const r = t.remote;
    t.bar.hidden = !r || t.collapsed;
    if (!r) return;
    t.more.hidden = t.mode !== "head" && !t.error;
    t.more.textContent = t.error ? "Retry" : "Show all";
    t.more.setAttribute("aria-label", `${t.error ? "Retry loading" : "Show all"} output of ${t.script} on ${t.target}`);
    const kept = fmtBytes(r.size);
    if (t.error) t.barText.textContent = t.error;
    else if (t.mode === "head") t.barText.textContent = `Showing the first lines of ${kept} kept`;
    else if (t.loading) t.barText.textContent = `Loading… ${fmtBytes(r.bytes)} of ${kept}`;
    else t.barText.textContent = `${fmtBytes(r.bytes)} of ${kept} loaded · more loads as you scroll`;
  }

  /**
   * Draw the lines of `t` that are in its pane's view (`fresh`: just put into the DOM, so its
   * scroll position is to be restored). Works from the scroll position the scroll events
   * recorded, never reading the DOM; returns the scrollTop to set, or null.
   */
  renderPane(t, fresh) {
    const lines = t.collapsed ? 0 : this.paneLines(t);
    if (!lines) {
      if (!t.pre.hidden) t.pre.hidden = true;
      return null;
    }
    if (t.pre.hidden) {
      t.pre.hidden = false;
      fresh = true; // a hidden element lost its scroll position
    }
    const paneH = lines * LINE_H + PANE_PAD;
    const total = this.displayLines(t);
    if (t.paneH !== paneH) t.pre.style.height = `${paneH}px`;
    if (t.spacerH !== total * LINE_H) t.spacer.style.height = `${total * LINE_H}px`;
    t.paneH = paneH;
    t.spacerH = total * LINE_H;
    const max = Math.max(0, total * LINE_H + PANE_PAD - paneH);
    let to = null;
    if (t.stick) {
      // (a horizontal scrollbar makes the real end a little further: let the browser clamp)
      if (fresh || t.scrollTop < max) to = 1e9;
      t.scrollTop = Math.max(t.scrollTop, max);
    } else if (t.scrollTop > max) {
      t.scrollTop = max;
      to = max;
    } else if (fresh && t.scrollTop) {
      to = t.scrollTop;
    }
    const first = Math.max(0, Math.floor(t.scrollTop / LINE_H) - OVERSCAN_LINES);
    const last = Math.min(total, first + Math.min(MAX_DOM_LINES, lines + 2 * OVERSCAN_LINES));
    if (t.remote && t.mode === "open" && !t.error && (!t.remote.started || last > t.lines.total)) {
      t.want = last;
      this.load(t);
    }
    const key = `${first}:${last}:${t.lines.version}`;
    if (key !== t.winKey) {
      t.winKey = key;
      t.win.style.top = `${first * LINE_H}px`;
      t.win.replaceChildren(...t.lines.slice(first, last).map(({ stream, text }) => (stream === "stderr"
        ? h("span", { class: "stderr", text }) : document.createTextNode(text))));
    }
    return to;
  }

  /** Matches of the search among what is drawn (headers and visible lines). */
  highlight() {
    if (typeof CSS === "undefined" || !CSS.highlights || typeof Highlight !== "function") return;
    const q = this.view.query.toLowerCase();
    if (!q && !this.highlighted) return;
    const ranges = [];
    if (q) {
      const walker = document.createTreeWalker(this.canvas, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node && ranges.length < MAX_HIGHLIGHTS; node = walker.nextNode()) {
        if (node.parentElement && node.parentElement.closest("button")) continue;
        const text = node.data.toLowerCase();
        for (let i = text.indexOf(q); i !== -1 && ranges.length < MAX_HIGHLIGHTS; i = text.indexOf(q, i + q.length)) {
          const r = new Range();
          r.setStart(node, i);
          r.setEnd(node, i + q.length);
          ranges.push(r);
        }
      }
    }
    // (touch the registry only when something is or was highlighted: a change repaints)
    if (ranges.length) CSS.highlights.set("oplog-match", new Highlight(...ranges));
    else if (this.highlighted) CSS.highlights.delete("oplog-match");
    this.highlighted = ranges.length > 0;
  }
}
