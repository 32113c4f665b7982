// Output groups of one operation (SPEC §10.3, issue #17): per script a summary line
// "37 identical · 2 differ · 1 failed", one row per group (tasks with equal status, exit code
// and normalised output), a group's targets and normalised output head on click, a target's
// full output (paged), "Diff vs majority", and the rerun buttons (failed / unfinished / this
// group) for admins and operators.
//
// Sources: the `groups` SSE event while the operation runs (counts only) and
// GET /api/operations/{id}/groups (targets and heads too) on open, a few times while it runs
// (at most every LOAD_EVERY_MS) and once when it ends. Everything enters the DOM as text (h()).
//
// Definitions (docs/frontend.md): per script, *identical* = the tasks of the majority group
// (the largest successful group, the server's `majority`), *differ* = the other successful
// tasks, *failed* = every finished task that did not succeed (failed, timeout, stopped,
// skipped, interrupted), *pending* = tasks not finished yet (queued or running).

import * as api from "./api.js";
import { ApiError } from "./api.js";
import { badge, h, replaceKeepingFocus, showError, statusKind, toast } from "./dom.js";
import { planAndConfirm } from "./plandialog.js";

const ACTIVE = new Set(["queued", "running"]);
const LOAD_EVERY_MS = 1500;
const FIRST_TARGETS = 3;
const ROWS_SHOWN = 50;
const OUTPUT_PAGE = 65536;
const DIFF_LINES_SHOWN = 5000;
const RUNNER_ROLES = new Set(["admin", "operator"]);

/** The signed-in user may rerun (the server decides too: a viewer gets 403). */
function mayRun() {
  const user = (window.__linkops && window.__linkops.user) || {};
  return RUNNER_ROLES.has(String(user.role || ""));
}

/** Per-script numbers of the summary line (see the definitions above). */
export function summarise(script, tasks) {
  let identical = 0;
  let differ = 0;
  let failed = 0;
  for (const g of script.groups) {
    const n = Number(g.count) || 0;
    if (g.key === script.majority) identical += n;
    else if (g.status === "success") differ += n;
    else failed += n;
  }
  const pending = Math.max(0, tasks - identical - differ - failed);
  return { identical, differ, failed, pending };
}

export function summaryText(n) {
  const parts = [`${n.identical} identical`, `${n.differ} differ`, `${n.failed} failed`];
  if (n.pending) parts.push(`${n.pending} pending`);
  return parts.join(" · ");
}

/** "rerun of OP-1" / "reruns: OP-3, OP-4" as links to those operations (or null). */
export function lineageNodes(parent, children) {
  const link = (id) => h("a", { href: `#operations/${encodeURIComponent(id)}`, class: "mono", text: id });
  const kids = Array.isArray(children) ? children.filter(Boolean) : [];
  const parts = [];
  if (parent) parts.push(h("span", { class: "lineage-parent" }, "rerun of ", link(String(parent))));
  if (kids.length) {
    const items = [];
    kids.forEach((k, i) => items.push(i ? ", " : "", link(String(k))));
    parts.push(h("span", { class: "lineage-children" }, "reruns: ", ...items));
  }
  if (!parts.length) return null;
  const out = [];
  parts.forEach((p, i) => out.push(i ? " · " : "", p));
  return h("span", { class: "lineage small muted" }, ...out);
}

/** A unified diff as one text span per line, classed by kind (added, removed, hunk, …). */
export function diffNodes(text) {
  const lines = String(text || "").split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  const shown = lines.slice(0, DIFF_LINES_SHOWN).map((line) => {
    let kind = "ctx";
    if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    else if (line.startsWith("@@")) kind = "hunk";
    else if (line.startsWith("=== ")) kind = "section";
    return h("span", { class: `diff-line diff-${kind}`, text: `${line}\n` });
  });
  if (lines.length > shown.length) {
    shown.push(h("span", { class: "diff-line diff-more", text: `… ${lines.length - shown.length} more lines not shown\n` }));
  }
  return shown;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

export class OpGroups {
  /**
   * @param {HTMLElement} container  emptied and filled (the #op-groups element)
   * @param {{id: string, scripts: {id: string, name: string}[], targets: string[],
   *          status: string, onOpen: (id: string) => void}} op
   */
  constructor(container, op) {
    this.container = container;
    this.id = op.id;
    this.scriptInfo = op.scripts;
    this.tasksPerScript = op.targets.length;
    this.onOpen = op.onOpen;
    this.status = String(op.status || "queued").toLowerCase();
    this.scripts = new Map(); // position -> {script, position, majority, groups, more}
    this.details = new Map(); // key -> a group of GET …/groups (targets, heads)
    this.unfinished = [];
    this.seen = -1; // `finished` of the newest state applied
    this.selected = null; // key of the open group
    this.view = null; // what the detail's lower half shows: {kind, target?, …}
    this.showAll = new Set(); // positions whose every group row is shown
    this.sections = new Map(); // position -> {el, head, list, detail, sig}
    this.viewVersion = 0; // bumped whenever the open group's lower half changes
    this.busy = false; // a rerun request is on its way
    this.loading = null;
    this.loadTimer = 0;
    this.lastLoad = 0;
    this.destroyed = false;
    this.body = h("div", { class: "grp-body" });
    this.actions = h("div", { class: "grp-actions" });
    this.toggle = h("button", {
      class: "btn btn-link grp-toggle", type: "button", "aria-expanded": "true", id: "grp-toggle",
      title: "Show or hide the group rows (the summary stays)",
    }, h("span", { class: "grp-title", text: "Output groups" }));
    this.toggle.addEventListener("click", () => {
      const open = this.toggle.getAttribute("aria-expanded") !== "true";
      this.toggle.setAttribute("aria-expanded", String(open));
      container.classList.toggle("grp-collapsed", !open);
    });
    container.classList.remove("grp-collapsed");
    container.replaceChildren(
      h("div", { class: "grp-bar" }, this.toggle, h("span", { class: "spacer" }), this.actions),
      this.body);
    container.hidden = false;
    this.render();
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.loadTimer);
    this.container.replaceChildren();
    this.container.hidden = true;
  }

  get active() {
    return ACTIVE.has(this.status);
  }

  /** The operation's status changed; when it ends, the final groups are fetched. */
  setStatus(status) {
    const s = String(status || "").toLowerCase();
    const wasActive = this.active;
    this.status = s;
    if (wasActive && !this.active) this.load();
    else this.render();
  }

  /** A `groups` SSE event: counts per group (no targets, no heads). */
  applyEvent(d) {
    if (this.destroyed || !d || !Array.isArray(d.script_groups)) return;
    const finished = Number(d.finished);
    if (Number.isFinite(finished) && finished < this.seen) return;
    let partial = false;
    for (const sg of d.script_groups) {
      // More groups than the event lists: their counts are only in GET …/groups.
      if (sg.more) {
        partial = true;
        continue;
      }
      this.scripts.set(Number(sg.position), {
        script: sg.script, position: Number(sg.position), majority: sg.majority || null,
        groups: Array.isArray(sg.groups) ? sg.groups : [], more: 0,
      });
    }
    if (Number.isFinite(finished)) this.seen = finished;
    this.render();
    this.scheduleLoad(partial ? 0 : LOAD_EVERY_MS);
  }

  /** GET …/groups soon (at most one request at a time and one every LOAD_EVERY_MS). */
  scheduleLoad(delay = LOAD_EVERY_MS) {
    if (this.loadTimer || this.destroyed) return;
    const wait = Math.max(delay, this.lastLoad + LOAD_EVERY_MS - Date.now(), 0);
    this.loadTimer = setTimeout(() => {
      this.loadTimer = 0;
      this.load();
    }, wait);
  }

  async load() {
    if (this.destroyed) return;
    if (this.loading) {
      // One request at a time; ask again once it is back (state may have moved meanwhile).
      this.loading.then(() => this.scheduleLoad(0));
      return;
    }
    this.lastLoad = Date.now();
    this.loading = (async () => {
      try {
        const r = await api.operationGroups(this.id);
        if (!this.destroyed) this.applyFull(r);
      } catch (err) {
        if (!this.destroyed) showError(err, `Loading the output groups of ${this.id}`);
      }
    })();
    await this.loading;
    this.loading = null;
  }

  applyFull(r) {
    for (const sg of r.script_groups || []) {
      for (const g of sg.groups || []) this.details.set(g.key, { ...g, script: sg.script, position: sg.position });
    }
    const finished = Number(r.finished);
    if (!Number.isFinite(finished) || finished >= this.seen) {
      this.seen = Number.isFinite(finished) ? finished : this.seen;
      this.scripts = new Map((r.script_groups || []).map((sg) => [Number(sg.position), {
        script: sg.script, position: Number(sg.position), majority: sg.majority || null,
        groups: sg.groups || [], more: 0,
      }]));
      this.unfinished = Array.isArray(r.unfinished) ? r.unfinished : [];
      // (an answer that left before operation_end must not make an ended operation active again)
      const status = String(r.status || "").toLowerCase();
      if (status && (this.active || !ACTIVE.has(status))) this.status = status;
    } else if (this.active) {
      this.scheduleLoad(); // older than the events: fetch again for fresh targets
    }
    this.render();
  }

  // ---- what can be rerun -------------------------------------------------------------

  allGroups() {
    return [...this.scripts.values()].flatMap((sg) => sg.groups);
  }

  rerunCounts() {
    // Targets, not tasks: the server reruns a target when any of its tasks matches.
    const failed = new Set();
    const unfinished = new Set();
    let detailsKnown = true;
    let failedTasks = 0;
    let unfinishedTasks = 0;
    for (const g of this.allGroups()) {
      if (g.status === "success") continue;
      const d = this.details.get(g.key);
      const n = Number(g.count) || 0;
      unfinishedTasks += n;
      if (g.status === "failed" || g.status === "timeout") failedTasks += n;
      if (!d || !Array.isArray(d.targets)) {
        detailsKnown = false;
        continue;
      }
      for (const t of d.targets) {
        unfinished.add(t);
        if (g.status === "failed" || g.status === "timeout") failed.add(t);
      }
    }
    for (const u of this.unfinished) unfinished.add(u.target);
    unfinishedTasks += this.unfinished.length;
    return {
      failed: detailsKnown ? failed.size : failedTasks,
      unfinished: detailsKnown ? unfinished.size : unfinishedTasks,
    };
  }

  // ---- rendering ---------------------------------------------------------------------

  render() {
    if (this.destroyed) return;
    this.renderActions();
    const positions = [...this.scripts.keys()].sort((a, b) => a - b);
    if (!positions.length) {
      this.sections.clear();
      this.body.replaceChildren(h("p", { class: "muted small grp-empty", text: this.active
        ? "No task has finished yet: groups appear as tasks end."
        : "No finished tasks to group." }));
      return;
    }
    const wanted = positions.map((pos) => this.renderScript(this.scripts.get(pos)));
    // Keep the section elements (and an open detail's scroll position): re-order only if needed.
    const now = [...this.body.children];
    if (now.length !== wanted.length || now.some((el, i) => el !== wanted[i])) this.body.replaceChildren(...wanted);
  }

  renderActions() {
    const parts = [];
    if (mayRun()) {
      const n = this.rerunCounts();
      const why = this.active ? "Available once the operation has ended" : null;
      parts.push(
        this.rerunButton("failed", `Rerun failed${n.failed ? ` (${n.failed})` : ""}`, "grp-rerun-failed",
          why || (n.failed ? `Rerun the ${plural(n.failed, "target")} where a task failed or timed out` : "No task failed or timed out"),
          this.active || !n.failed),
        this.rerunButton("unfinished", `Rerun unfinished${n.unfinished ? ` (${n.unfinished})` : ""}`, "grp-rerun-unfinished",
          why || (n.unfinished ? `Rerun the ${plural(n.unfinished, "target")} where a task did not succeed` : "Every task succeeded"),
          this.active || !n.unfinished),
      );
    }
    replaceKeepingFocus(this.actions, ...parts);
  }

  rerunButton(which, label, id, title, disabled, group = null) {
    const btn = h("button", {
      class: "btn btn-small", type: "button", id, text: label, title, disabled: disabled || this.busy,
      dataset: { focus: id },
    });
    btn.addEventListener("click", () => this.rerun(which, group));
    return btn;
  }

  /** One script's section: summary line, group rows, the open group (rebuilt only on change). */
  renderScript(sg) {
    let sec = this.sections.get(sg.position);
    if (!sec) {
      sec = {
        head: h("div", { class: "grp-script-head" }),
        list: h("ul", { class: "grp-list" }),
        detail: h("div", { class: "grp-detail-slot" }),
        sig: null,
      };
      sec.el = h("section", { class: "grp-script", dataset: { script: sg.script, position: String(sg.position) } },
        sec.head, sec.list, sec.detail);
      this.sections.set(sg.position, sec);
    }
    const info = this.scriptInfo[sg.position] || { id: sg.script, name: sg.script };
    const n = summarise(sg, this.tasksPerScript);
    const summary = h("span", {
      class: "grp-summary", dataset: {
        identical: String(n.identical), differ: String(n.differ), failed: String(n.failed), pending: String(n.pending),
      },
    },
    h("b", { class: "grp-n-ok", text: String(n.identical) }), " identical · ",
    h("b", { class: "grp-n-differ", text: String(n.differ) }), " differ · ",
    h("b", { class: "grp-n-failed", text: String(n.failed) }), " failed",
    n.pending ? ` · ${n.pending} pending` : "");
    sec.head.replaceChildren(...[
      this.scriptInfo.length > 1 || info.name !== info.id
        ? h("span", { class: "grp-script-name" }, h("span", { class: "meta-index", text: `${sg.position + 1}` }), ` ${info.name}`)
        : null,
      summary,
    ].filter(Boolean));
    sec.list.setAttribute("aria-label", `Output groups of ${info.name}`);
    const all = this.showAll.has(sg.position);
    const groups = all ? sg.groups : sg.groups.slice(0, ROWS_SHOWN);
    const rows = groups.map((g) => this.renderRow(sg, g));
    if (sg.groups.length > groups.length) {
      const more = h("button", {
        class: "btn btn-link btn-small", type: "button", text: `Show all ${sg.groups.length} groups`,
        dataset: { focus: `grp-more:${sg.position}` },
      });
      more.addEventListener("click", () => {
        this.showAll.add(sg.position);
        this.render();
      });
      rows.push(h("li", { class: "grp-more" }, more));
    }
    replaceKeepingFocus(sec.list, ...rows);
    const selected = sg.groups.find((g) => g.key === this.selected) || null;
    const d = selected ? this.details.get(selected.key) : null;
    const sig = selected
      ? JSON.stringify([selected.key, selected.count, sg.majority, sg.groups.length, this.active, this.busy,
        mayRun(), d ? (d.targets || []).length : -1, this.viewVersion])
      : null;
    if (sig !== sec.sig) {
      sec.sig = sig;
      sec.detail.replaceChildren(...(selected ? [this.renderDetail(sg, selected)] : []));
    }
    return sec.el;
  }

  renderRow(sg, g) {
    const d = this.details.get(g.key);
    const targets = d && Array.isArray(d.targets) ? d.targets : null;
    const first = targets
      ? targets.slice(0, FIRST_TARGETS).join(", ") + (targets.length > FIRST_TARGETS ? ` +${targets.length - FIRST_TARGETS}` : "")
      : "…";
    const isMajority = g.key === sg.majority;
    const open = g.key === this.selected;
    const row = h("button", {
      class: `grp-row${open ? " grp-row-open" : ""}`, type: "button", "aria-expanded": String(open),
      dataset: { key: g.key, count: String(g.count), status: String(g.status), focus: `grp:${g.key}` },
      title: targets ? targets.join(", ") : "",
    },
    h("span", { class: "grp-count", text: `${g.count}×` }),
    badge(String(g.status), statusKind(g.status)),
    h("span", { class: "grp-exit mono small muted", text: g.exit_code === null || g.exit_code === undefined ? "no exit code" : `exit ${g.exit_code}` }),
    isMajority ? h("span", { class: "grp-majority", text: "majority", title: "The largest group of successful tasks" }) : null,
    h("span", { class: "grp-targets mono small", text: first }));
    row.addEventListener("click", () => this.select(open ? null : g.key));
    return h("li", {}, row);
  }

  select(key) {
    this.selected = key;
    this.view = null;
    this.viewVersion += 1;
    this.render();
    if (key) {
      const again = this.body.querySelector(`.grp-row[data-key="${CSS.escape(key)}"]`);
      if (again) again.focus({ preventScroll: true });
      const detail = this.body.querySelector(".grp-detail");
      if (detail) detail.scrollIntoView({ block: "nearest" });
      if (!this.details.has(key)) this.load();
    }
  }

  renderDetail(sg, g) {
    const d = this.details.get(g.key);
    const isMajority = g.key === sg.majority;
    const tools = [];
    const diff = h("button", {
      class: "btn btn-small", type: "button", id: "grp-diff-majority", text: "Diff vs majority",
      disabled: isMajority,
      title: isMajority ? "This is the majority group" : "Compare this group's normalised output with the majority's",
    });
    diff.addEventListener("click", () => this.showDiff(g.key, "majority"));
    tools.push(diff);
    const others = sg.groups.filter((o) => o.key !== g.key);
    if (others.length > 1) {
      const pick = h("select", { class: "grp-against", "aria-label": "Diff against another group" },
        h("option", { value: "", text: "Diff against…" }),
        ...others.map((o) => h("option", { value: o.key, text: `${o.count}× ${o.status}${o.key === sg.majority ? " (majority)" : ""} · ${o.key}` })));
      pick.addEventListener("change", () => {
        if (pick.value) this.showDiff(g.key, pick.value);
      });
      tools.push(pick);
    }
    if (mayRun()) {
      tools.push(this.rerunButton("group", `Rerun this group (${plural(Number(g.count) || 0, "target")})`, "grp-rerun-group",
        this.active ? "Available once the operation has ended" : "Rerun the targets of this group", this.active, g.key));
    }
    const close = h("button", { class: "btn btn-ghost btn-small", type: "button", text: "×", "aria-label": "Close the group" });
    close.addEventListener("click", () => this.select(null));
    const targets = d && Array.isArray(d.targets) ? d.targets : [];
    const targetButtons = targets.map((t) => {
      const b = h("button", {
        class: "chip grp-target", type: "button", text: t,
        "aria-pressed": String(Boolean(this.view && this.view.target === t)),
        dataset: { target: t }, title: `Show the full output of ${t}`,
      });
      b.addEventListener("click", () => this.showOutput(g, t));
      return b;
    });
    const heads = [];
    if (d) {
      const out = d.stdout_head || "";
      const err = d.stderr_head || "";
      if (out) heads.push(h("pre", { class: "grp-head", text: out }));
      if (err) heads.push(h("pre", { class: "grp-head grp-stderr", text: err }));
      if (!out && !err) heads.push(h("p", { class: "muted small", text: "(no output)" }));
    } else {
      heads.push(h("p", { class: "muted small", text: "Loading…" }));
    }
    return h("div", { class: "grp-detail", dataset: { key: g.key }, role: "region", "aria-label": `Group ${g.key}` },
      h("div", { class: "grp-detail-head" },
        h("span", { class: "mono small", text: `${g.key} · ${g.count}× ${g.status}` +
          (g.exit_code === null || g.exit_code === undefined ? "" : ` · exit ${g.exit_code}`) }),
        h("span", { class: "spacer" }), ...tools, close),
      h("div", { class: "grp-detail-targets", "aria-label": "Targets of this group" }, ...targetButtons),
      h("div", { class: "grp-detail-label small muted", text: "Output head, normalised (the link's id and host read {link} and {host}):" }),
      ...heads,
      this.renderView());
  }

  renderView() {
    const v = this.view;
    if (!v) return null;
    if (v.kind === "loading") return h("div", { class: "grp-view" }, h("p", { class: "muted small", text: v.text }));
    if (v.kind === "message") {
      return h("div", { class: "grp-view" }, h("p", { class: "grp-message", role: "status", text: v.text }));
    }
    if (v.kind === "diff") {
      return h("div", { class: "grp-view" },
        h("div", { class: "small muted", text: `Diff of this group's normalised output against ${v.what}${v.cut ? " (only the first 20,000 lines of each stream compared)" : ""}:` }),
        h("pre", { class: "grp-diff", id: "grp-diff" }, ...diffNodes(v.text)));
    }
    // full output of one target
    const parts = [h("div", { class: "small muted", text: `Full output of ${v.target} (as kept, not normalised):` })];
    for (const stream of ["stdout", "stderr"]) {
      const s = v[stream];
      if (!s.text && s.next === null) continue;
      parts.push(h("pre", { class: `grp-output${stream === "stderr" ? " grp-stderr" : ""}`, dataset: { stream }, text: s.text }));
      if (s.truncated) parts.push(h("p", { class: "small muted", text: `The middle of ${stream} was cut when it was stored.` }));
      if (s.next !== null) {
        const more = h("button", { class: "btn btn-small", type: "button", text: `Load more ${stream} (${s.loaded} of ${s.total} bytes)` });
        more.addEventListener("click", () => this.moreOutput(v, stream));
        parts.push(more);
      }
    }
    if (parts.length === 1) parts.push(h("p", { class: "muted small", text: "(no output)" }));
    return h("div", { class: "grp-view", dataset: { target: v.target } }, ...parts);
  }

  setView(view) {
    this.view = view;
    this.viewVersion += 1;
    this.render();
    const shown = view && view.kind !== "loading" ? this.body.querySelector(".grp-view") : null;
    if (shown) shown.scrollIntoView({ block: "nearest" });
  }

  async showDiff(key, against) {
    this.setView({ kind: "loading", text: "Comparing…" });
    try {
      const r = await api.groupDiff(this.id, key, against);
      if (this.selected !== key) return;
      const sg = [...this.scripts.values()].find((x) => x.groups.some((g) => g.key === key));
      const what = sg && sg.majority === r.against ? `the majority (group ${r.against})` : `group ${r.against}`;
      this.setView({ kind: "diff", what, text: r.diff, cut: r.cut });
    } catch (err) {
      if (this.selected !== key) return;
      if (err instanceof ApiError && err.code === "NO_MAJORITY") {
        this.setView({ kind: "message", text: "No task of this script succeeded, so there is no majority to compare with. Pick another group to compare with instead." });
      } else {
        this.setView(null);
        showError(err, `Diff of group ${key}`);
      }
    }
  }

  async showOutput(g, target) {
    const script = g.script || (this.details.get(g.key) || {}).script;
    this.setView({ kind: "loading", text: `Loading the output of ${target}…`, target });
    const view = { kind: "output", target, script, key: g.key };
    try {
      for (const stream of ["stdout", "stderr"]) {
        const page = await api.taskOutput(this.id, target, script, stream, 0, OUTPUT_PAGE);
        view[stream] = {
          text: page.data || "", next: page.next_offset ?? null, total: page.total || 0,
          loaded: (page.offset || 0) + new TextEncoder().encode(page.data || "").length,
          truncated: Boolean(page.truncated),
        };
      }
    } catch (err) {
      if (this.view && this.view.target === target) this.setView(null);
      showError(err, `Loading the output of ${target}`);
      return;
    }
    if (this.selected === g.key && this.view && this.view.target === target) this.setView(view);
  }

  async moreOutput(view, stream) {
    const s = view[stream];
    try {
      const page = await api.taskOutput(this.id, view.target, view.script, stream, s.next, OUTPUT_PAGE);
      s.text += page.data || "";
      s.next = page.next_offset ?? null;
      s.loaded = (page.offset || 0) + new TextEncoder().encode(page.data || "").length;
    } catch (err) {
      showError(err, `Loading more output of ${view.target}`);
      return;
    }
    if (this.view === view) this.setView(view);
  }

  // ---- rerun -------------------------------------------------------------------------

  async rerun(which, group) {
    if (this.busy) return;
    const body = { which };
    if (group) body.group = group;
    this.busy = true;
    this.render();
    try {
      await this.submitRerun(body);
    } catch (err) {
      if (err instanceof ApiError && err.code === "CONFIRMATION_REQUIRED") {
        // A prod-tagged target or more than confirm_over: the plan dialog shows what would
        // run where (details.run is the body to plan) and sends the rerun with the phrase.
        await this.confirmRerun(err.details || {}, body);
      } else {
        showError(err, `Rerun ${which === "group" ? "of the group" : which} of ${this.id}`);
      }
    } finally {
      this.busy = false;
      this.render();
    }
  }

  async confirmRerun(details, body) {
    let outcome;
    try {
      outcome = await planAndConfirm(details.run, {
        endpoint: `/api/operations/${encodeURIComponent(this.id)}/rerun`, send: body,
      });
    } catch (err) {
      showError(err, `Planning the rerun of ${this.id}`);
      return;
    }
    if (outcome) this.opened(outcome.result);  // null: the operator cancelled, nothing ran
  }

  async submitRerun(body) {
    return this.opened(await api.rerunOperation(this.id, body));
  }

  opened(r) {
    const targets = Array.isArray(r.targets) ? r.targets : [];
    toast(`${r.operation_id} reruns ${plural(targets.length, "target")} of ${this.id}`, "ok");
    this.onOpen(r.operation_id);
    return r.operation_id;
  }
}
