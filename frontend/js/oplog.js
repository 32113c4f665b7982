// Renders one operation's output grouped per target and script, fast enough for 100k-line
// outputs: incoming chunks are queued and appended once per animation frame as one text node
// per task, each task keeps at most MAX_DOM_LINES lines in the DOM (older ones are replaced
// by a "… N earlier lines hidden" marker), and the complete text stays in memory for download.
//
// Header line per task: "[Package #] - [PACKAGE NAME] - [SCRIPT NAME] - [STATUS]" where the
// package # is the script's 1-based position in the operation, the package name is the
// script's display name and the script name its id.

import { h } from "./dom.js";

export const MAX_DOM_LINES = 2000;
const MAX_HIGHLIGHTS = 2000;
const FINAL = new Set(["SUCCESS", "FAILED", "STOPPED", "TIMEOUT", "SKIPPED"]);

const countLines = (text) => {
  let n = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) n += 1;
  return n;
};

/** The last `n` lines of text (by newline count) and how many lines were cut. */
function tailLines(text, n) {
  let pos = text.length;
  if (text.endsWith("\n")) pos -= 1;
  for (let i = 0; i < n; i += 1) {
    pos = text.lastIndexOf("\n", pos - 1);
    if (pos < 0) return { text, cut: 0 };
  }
  return { text: text.slice(pos + 1), cut: countLines(text.slice(0, pos + 1)) };
}

/** Statuses that count as failed in the summary and the "failed only" filter. */
export const FAILED_STATUSES = new Set(["FAILED", "TIMEOUT"]);

function countMatches(text, q) {
  let n = 0;
  for (let i = text.indexOf(q); i !== -1; i = text.indexOf(q, i + q.length)) n += 1;
  return n;
}

/** Ranges over the text nodes of `pre` where `q` occurs (within one node), for highlighting. */
function collectRanges(pre, q, out) {
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node && out.length < MAX_HIGHLIGHTS; node = walker.nextNode()) {
    const text = node.data.toLowerCase();
    for (let i = text.indexOf(q); i !== -1 && out.length < MAX_HIGHLIGHTS; i = text.indexOf(q, i + q.length)) {
      const r = new Range();
      r.setStart(node, i);
      r.setEnd(node, i + q.length);
      out.push(r);
    }
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

export class OpLog {
  /**
   * @param {HTMLElement} container  emptied and filled with the task groups
   * @param {{id: string, scripts: {id: string, name: string}[], targets: string[]}} op
   */
  constructor(container, op) {
    this.container = container;
    this.op = op;
    this.tasks = new Map(); // `${target}\u0000${script}` -> task
    this.groups = new Map(); // target -> {el, body, summary}
    this.dirty = new Set();
    this.frame = 0;
    this.destroyed = false;
    this.view = { query: "", failedOnly: false };
    this.onChange = op.onChange || (() => {});
    this.viewTimer = 0;
    container.replaceChildren();
    for (const target of op.targets) {
      for (const script of op.scripts) this.task(target, script.id);
    }
  }

  scriptIndex(scriptId) {
    const i = this.op.scripts.findIndex((s) => s.id === scriptId);
    if (i >= 0) return i;
    this.op.scripts.push({ id: scriptId, name: scriptId });
    return this.op.scripts.length - 1;
  }

  group(target) {
    let g = this.groups.get(target);
    if (g) return g;
    const summary = h("span", { class: "target-summary muted" });
    const body = h("div", { class: "target-body" });
    const el = h(
      "details",
      { class: "target-group", open: true, dataset: { target } },
      h("summary", {}, h("span", { class: "target-name", text: target }), summary),
      body,
    );
    this.container.append(el);
    g = { el, body, summary };
    this.groups.set(target, g);
    return g;
  }

  task(target, scriptId) {
    const key = `${target}\u0000${scriptId}`;
    let t = this.tasks.get(key);
    if (t) return t;
    const index = this.scriptIndex(scriptId);
    const script = this.op.scripts[index];
    const header = h("div", { class: "task-header status-queued", dataset: { status: "QUEUED" } });
    const exit = h("span", { class: "task-exit muted" });
    const marker = h("div", { class: "task-hidden", hidden: true });
    const pre = h("pre", { class: "task-output", tabindex: "0", "aria-label": `Output of ${scriptId} on ${target}` });
    const el = h("div", { class: "task", dataset: { target, script: scriptId } },
      h("div", { class: "task-head" }, header, exit), marker, pre);
    t = {
      target, script: scriptId, index, name: script.name, status: "QUEUED", exitCode: null,
      header, exit, marker, pre, el,
      full: [], pending: [], domChunks: [], domLines: 0, hidden: 0, totalLines: 0,
    };
    this.tasks.set(key, t);
    // Keep tasks of one target in script order even when events arrive out of order.
    const body = this.group(target).body;
    const after = [...body.children].find((c) => this.scriptIndex(c.dataset.script) > index);
    body.insertBefore(el, after || null);
    this.renderHeader(t);
    return t;
  }

  renderHeader(t) {
    t.header.textContent = `[${t.index + 1}] - [${t.name}] - [${t.script}] - [${t.status}]`;
    t.header.className = `task-header status-${t.status.toLowerCase()}`;
    t.header.dataset.status = t.status;
    t.exit.textContent = t.exitCode === null || t.exitCode === undefined ? "" : `exit ${t.exitCode}`;
    this.renderSummary(t.target);
    if (this.view.failedOnly) this.applyVisibility();
    this.onChange();
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

  /**
   * Show only what the operator asked for: tasks whose header or output contains `query`
   * (matches highlighted with the CSS Custom Highlight API, so the output DOM is not touched)
   * and/or only failed tasks. Returns the number of matches.
   */
  setView(view) {
    this.view = { ...this.view, ...view };
    return this.applyVisibility();
  }

  applyVisibility() {
    const q = this.view.query.toLowerCase();
    const ranges = [];
    let matches = 0;
    const shownPerTarget = new Map();
    for (const t of this.tasks.values()) {
      let show = !this.view.failedOnly || FAILED_STATUSES.has(t.status);
      if (show && q) {
        const text = t.full.map((c) => (typeof c === "string" ? c : c.data)).join("").toLowerCase();
        const inHeader = t.header.textContent.toLowerCase().includes(q) || t.target.toLowerCase().includes(q);
        const n = countMatches(text, q);
        matches += n;
        show = n > 0 || inHeader;
        if (n && ranges.length < MAX_HIGHLIGHTS) collectRanges(t.pre, q, ranges);
      }
      t.el.hidden = !show;
      shownPerTarget.set(t.target, (shownPerTarget.get(t.target) || 0) + (show ? 1 : 0));
    }
    for (const [target, g] of this.groups) g.el.hidden = !shownPerTarget.get(target);
    if (typeof CSS !== "undefined" && CSS.highlights && typeof Highlight === "function") {
      if (ranges.length) CSS.highlights.set("oplog-match", new Highlight(...ranges));
      else CSS.highlights.delete("oplog-match");
    }
    return matches;
  }

  renderSummary(target) {
    const g = this.groups.get(target);
    if (!g) return;
    const counts = {};
    for (const t of this.tasks.values()) {
      if (t.target === target) counts[t.status] = (counts[t.status] || 0) + 1;
    }
    g.summary.textContent = Object.entries(counts).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(" · ");
  }

  setStatus(target, scriptId, status, exitCode, name) {
    const t = this.task(target, scriptId);
    if (name) t.name = name;
    t.status = taskStatus(status);
    if (t.status === "RUNNING" && !t.startedAt) t.startedAt = Date.now();
    if (exitCode !== undefined && exitCode !== null) t.exitCode = exitCode;
    this.renderHeader(t);
  }

  append(target, scriptId, stream, data) {
    if (!data) return;
    const t = this.task(target, scriptId);
    t.full.push(stream === "stderr" ? { stream, data } : data);
    const last = t.pending[t.pending.length - 1];
    if (last && last.stream === stream) last.data += data;
    else t.pending.push({ stream, data });
    this.dirty.add(t);
    if (!this.frame && !this.destroyed) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Apply queued output to the DOM: one node per stream run per task per frame. */
  flush() {
    this.frame = 0;
    for (const t of this.dirty) {
      const stick = t.pre.scrollHeight - t.pre.scrollTop - t.pre.clientHeight < 24;
      for (const { stream, data } of t.pending) {
        const { text, cut } = tailLines(data, MAX_DOM_LINES);
        t.hidden += cut;
        const lines = countLines(text);
        t.totalLines += lines + cut;
        const node = stream === "stderr" ? h("span", { class: "stderr", text }) : document.createTextNode(text);
        t.pre.append(node);
        t.domChunks.push({ node, lines });
        t.domLines += lines;
      }
      t.pending = [];
      while (t.domLines > MAX_DOM_LINES && t.domChunks.length > 1) {
        const first = t.domChunks.shift();
        first.node.remove();
        t.domLines -= first.lines;
        t.hidden += first.lines;
      }
      if (t.hidden > 0) {
        t.marker.hidden = false;
        t.marker.textContent = `… ${t.hidden} earlier lines hidden (download the log for everything)`;
      }
      if (stick) t.pre.scrollTop = t.pre.scrollHeight;
    }
    this.dirty.clear();
    // New output may match (or no longer hide) under an active search: re-apply, at most
    // every 300 ms so a flood of output does not re-scan everything each frame.
    if (this.view.query && !this.viewTimer) {
      this.viewTimer = setTimeout(() => {
        this.viewTimer = 0;
        if (!this.destroyed) this.applyVisibility();
      }, 300);
    }
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

  /** Everything received, for download (independent of what the DOM still shows). */
  fullText() {
    const out = [`# Operation ${this.op.id}`, ""];
    const ordered = [...this.tasks.values()].sort((a, b) =>
      a.target === b.target ? a.index - b.index : a.target < b.target ? -1 : 1);
    for (const t of ordered) {
      out.push(`== ${t.target} :: [${t.index + 1}] - [${t.name}] - [${t.script}] - [${t.status}]` +
        (t.exitCode !== null ? ` exit ${t.exitCode}` : ""));
      out.push(t.full.map((c) => (typeof c === "string" ? c : c.data)).join(""));
    }
    return out.join("\n");
  }

  destroy() {
    this.destroyed = true;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    clearTimeout(this.viewTimer);
    if (typeof CSS !== "undefined" && CSS.highlights) CSS.highlights.delete("oplog-match");
  }
}
