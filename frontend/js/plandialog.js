// Plan and confirm before a run (SPEC §10.3, issue #17): POST /api/operations/plan with the
// run body, then — when the plan asks for a typed confirmation, a target's host key is
// unknown, or the caller wants it shown — a modal dialog with what will run where: every
// target with its badges (enrolled, last verification, health, host key), the inventory
// commit, each script with its path, sha256, flags and text. The Run button sends the body
// again with plan_id (and confirm: the phrase, which must be typed exactly).
//
// One entry point for the run form and the rerun buttons: planAndConfirm(). Plan errors at
// run time (PLAN_STALE, PLAN_MISMATCH, PLAN_NOT_FOUND, CONFIRMATION_REQUIRED) are explained in
// the dialog (and a toast) with "Plan again"; every other refusal is the caller's to show.

import * as api from "./api.js";
import { $, badge, copyText, fmtTime, h, relTime, showError, statusKind, toast } from "./dom.js";

const PLAN_ERRORS = new Set(["PLAN_STALE", "PLAN_MISMATCH", "PLAN_NOT_FOUND", "CONFIRMATION_REQUIRED"]);
const FOCUSABLE = "button:not([disabled]), input:not([disabled]), [tabindex]:not([tabindex='-1']), summary, a[href]";

let active = null; // the one dialog session: {planBody, send, endpoint, plan, resolve, reject, busy, opener}
let planning = false; // the first plan request of a session is in flight

const short = (hash, n = 12) => (hash ? String(hash).slice(0, n) : "—");

/** Hosts whose key nobody checked yet: the first connection decides (`[ssh] host_key_policy`). */
const unknownKeys = (plan) => plan.targets.filter((t) => t.host_key === "unknown");

/**
 * Plan `planBody` (the body of POST /api/operations/run) and run it once the operator agrees.
 *
 * Options:
 * - `endpoint`: where the confirmed request goes (default "/api/operations/run"; a rerun uses
 *   "/api/operations/{id}/rerun").
 * - `send`: the body sent there (default `planBody`); `plan_id` and, when the plan asks for
 *   it, `confirm` are added. A rerun passes `{which, group?, concurrency?}`.
 * - `always`: show the dialog even when the plan needs no confirmation (default false: such a
 *   plan with no unknown host key is run at once, still with its plan_id).
 * - `opener`: where the focus goes back when the dialog closes and nothing else took it
 *   (default: the element focused at the call; pass it when the caller disables that one).
 *
 * Resolves with `{result, plan}` (`result`: the endpoint's answer, e.g. `{operation_id}`) once
 * the run was accepted, or null when the operator cancelled (Cancel, Escape). Rejects with the
 * ApiError of the plan request (validated like run: ENROLLMENT_REQUIRED, INVALID_FLAG, …) or of
 * the run request when it is not a plan error. Only one session at a time: a call while one
 * is planning or open resolves null.
 */
export async function planAndConfirm(planBody, {
  endpoint = "/api/operations/run", send = null, always = false, opener = document.activeElement,
} = {}) {
  if (active || planning) return null;
  planning = true;
  let plan;
  try {
    plan = await api.planOperation(planBody);
  } finally {
    planning = false;
  }
  return new Promise((resolve, reject) => {
    active = { planBody, send: send || planBody, endpoint, plan, resolve, reject, busy: false, opener };
    if (!always && !plan.confirm && !unknownKeys(plan).length) {
      run();
      return;
    }
    open(plan);
  });
}

function dialog() {
  return $("#plan-dialog");
}

function finish(outcome, value) {
  const session = active;
  if (!session) return;
  active = null;
  const dlg = dialog();
  if (dlg.open) dlg.close();
  // After the caller's own clean-up (it may re-enable the opener), unless it moved the focus.
  const back = session.opener;
  setTimeout(() => {
    const now = document.activeElement;
    const lost = !now || now === document.body || now === back || dlg.contains(now);
    if (back && document.contains(back) && lost) back.focus();
  }, 0);
  if (outcome === "ok") session.resolve(value);
  else session.reject(value);
}

let wired = false;
function wire() {
  if (wired) return;
  wired = true;
  const dlg = dialog();
  // Escape: the browser fires `cancel` on a modal dialog; it is ours to close.
  dlg.addEventListener("cancel", (ev) => {
    ev.preventDefault();
    if (active && !active.busy) finish("ok", null);
  });
  dlg.addEventListener("keydown", trapFocus);
  $("#plan-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!$("#plan-run").disabled) run();
  });
  $("#plan-cancel").addEventListener("click", () => {
    if (active && !active.busy) finish("ok", null);
  });
  $("#plan-again").addEventListener("click", planAgain);
}

/** Tab and Shift+Tab stay inside the dialog (showModal makes the page inert, not the browser chrome). */
function trapFocus(ev) {
  if (ev.key !== "Tab") return;
  const items = [...dialog().querySelectorAll(FOCUSABLE)].filter((el) => !el.closest("[hidden]") && el.getClientRects().length);
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  if (ev.shiftKey && (document.activeElement === first || !dialog().contains(document.activeElement))) {
    ev.preventDefault();
    last.focus();
  } else if (!ev.shiftKey && (document.activeElement === last || !dialog().contains(document.activeElement))) {
    ev.preventDefault();
    first.focus();
  }
}

function open(plan) {
  wire();
  render(plan);
  const dlg = dialog();
  if (!dlg.open) dlg.showModal();
  focusStart();
  loadScriptTexts(plan);
}

function focusStart() {
  const phrase = $("#plan-phrase");
  if (phrase) phrase.focus();
  else $("#plan-run").focus();
}

// ---- rendering --------------------------------------------------------------------------

function render(plan) {
  const n = plan.targets.length;
  $("#plan-title").textContent = `Plan: ${plan.scripts.length} script${plan.scripts.length === 1 ? "" : "s"} on ${n} target${n === 1 ? "" : "s"}`;
  setError(null);
  $("#plan-again").hidden = true;
  $("#plan-form").dataset.planId = plan.plan_id;
  const unknown = unknownKeys(plan);
  $("#plan-body").replaceChildren(...[
    h("p", { class: "plan-summary" },
      h("span", { text: "Inventory commit " }),
      h("code", { class: "plan-commit", id: "plan-commit", text: short(plan.inventory_commit), title: plan.inventory_commit || "no commit synced" }),
      h("span", { class: "muted", text: ` · concurrency ${plan.concurrency} · plan ${plan.plan_id}, valid until ${fmtTime(plan.expires_at)}` })),
    unknown.length
      ? h("p", { class: "run-note note-warn", id: "plan-hostkey-warning", text:
        `Host key unknown for ${unknown.map((t) => t.id).join(", ")}: no pinned key and not in known_hosts, so the first connection decides whether it is trusted ([ssh] host_key_policy).` })
      : null,
    h("h3", { class: "plan-h", text: "Targets" }),
    h("ul", { class: "plan-targets", id: "plan-targets" }, ...plan.targets.map(targetRow)),
    h("h3", { class: "plan-h", text: "Scripts, in this order" }),
    h("ol", { class: "plan-scripts", id: "plan-scripts" }, ...plan.scripts.map(scriptItem)),
  ].filter(Boolean));
  renderConfirm(plan);
}

function targetRow(t) {
  const key = {
    pinned: badge("host key pinned", "ok", "The inventory pins this host's key (ssh.hostKey)"),
    known: badge("host key known", "ok", "The host's key is in known_hosts"),
    unknown: badge("host key unknown", "warn", "Neither pinned nor in known_hosts"),
  }[t.host_key] || badge(`host key ${t.host_key}`, "muted");
  return h("li", { class: `plan-target ${t.host_key === "unknown" ? "plan-target-warn" : ""}`, dataset: { target: t.id, hostKey: t.host_key } },
    h("span", { class: "plan-target-name" },
      h("span", { text: t.name }),
      t.name !== t.id ? h("span", { class: "mono muted small", text: ` ${t.id}` }) : null),
    h("span", { class: "plan-badges" },
      t.enrolled ? badge("enrolled ✓", "ok") : badge("not enrolled", "warn"),
      badge(t.verified_at ? `verified ${relTime(t.verified_at)}` : "never verified", t.verified_at ? "muted" : "warn", t.verified_at ? fmtTime(t.verified_at) : undefined),
      badge(t.status || "unknown", statusKind(t.status), "Health status"),
      key,
      ...t.tags.map((tag) => h("span", { class: "plan-tag small muted", text: `#${tag}` }))));
}

function scriptItem(s) {
  const copy = h("button", { class: "btn btn-small", type: "button", text: "Copy", "aria-label": `Copy the sha256 of ${s.id}` });
  copy.addEventListener("click", async () => {
    if (await copyText(s.sha256)) toast(`Copied the sha256 of ${s.id}`, "ok");
  });
  return h("li", { class: "plan-script", dataset: { script: s.id, sha256: s.sha256 } },
    h("div", { class: "plan-script-head" },
      h("span", { class: "plan-script-name", text: s.name }),
      h("span", { class: "mono muted small", text: s.id }),
      h("span", { class: "mono small", text: s.path })),
    h("div", { class: "plan-script-hash small" },
      h("span", { class: "muted", text: "sha256 " }),
      h("code", { class: "plan-sha", text: short(s.sha256), title: s.sha256 }),
      copy),
    h("div", { class: "plan-script-flags small" },
      h("span", { class: "muted", text: "flags " }),
      h("code", { text: s.flags.length ? s.flags.join(" ") : "(none)" })),
    h("pre", { class: "plan-text", tabindex: "0", "aria-label": `Text of ${s.id}`, text: "Loading the script text…" }));
}

/** The text of every script, from GET /api/scripts/{id}; a catalogue that moved on is said. */
async function loadScriptTexts(plan) {
  await Promise.all(plan.scripts.map(async (s) => {
    let text;
    let note = "";
    try {
      const found = await api.script(s.id);
      text = typeof found.content === "string" ? found.content : "(the catalogue has no text for this script)";
      if (found.sha256 !== s.sha256) {
        note = `The catalogue's ${s.id} is now ${short(found.sha256)}…, not the planned ${short(s.sha256)}…: the text below is the current one. Plan again.`;
      }
    } catch (err) {
      text = `(could not load the text: ${err.message})`;
    }
    if (!active || active.plan !== plan) return; // re-planned or closed meanwhile
    const item = [...document.querySelectorAll("#plan-scripts .plan-script")].find((el) => el.dataset.script === s.id);
    if (!item) return;
    item.querySelector(".plan-text").textContent = text;
    if (note) item.insertBefore(h("p", { class: "run-note note-warn small", text: note }), item.querySelector(".plan-text"));
  }));
}

function renderConfirm(plan) {
  const box = $("#plan-confirm");
  const btn = $("#plan-run");
  const n = plan.targets.length;
  btn.textContent = `Run on ${n} target${n === 1 ? "" : "s"}`;
  btn.disabled = false;
  if (!plan.confirm) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  const { phrase, reason } = plan.confirm;
  const field = h("input", {
    id: "plan-phrase", type: "text", autocomplete: "off", spellcheck: "false", autocapitalize: "off",
    "aria-describedby": "plan-confirm-reason", dataset: { phrase },
  });
  const sync = () => {
    const ok = field.value === phrase;
    btn.disabled = !ok || Boolean(active && active.busy);
    field.toggleAttribute("aria-invalid", field.value !== "" && !phrase.startsWith(field.value));
  };
  field.addEventListener("input", sync);
  box.hidden = false;
  box.replaceChildren(
    h("p", { class: "run-note note-warn", id: "plan-confirm-reason", text: `Confirmation required: ${reason}.` }),
    h("label", { class: "plan-phrase-label", for: "plan-phrase" },
      h("span", { text: "Type " }), h("code", { class: "plan-phrase-text", text: phrase }), h("span", { text: " to confirm" })),
    field,
  );
  btn.disabled = true;
}

function setError(message) {
  const box = $("#plan-error");
  box.hidden = !message;
  box.textContent = message || "";
}

// ---- running ------------------------------------------------------------------------------

/** The body that goes to the endpoint: the caller's, plus plan_id and (if asked) the phrase. */
function confirmedBody() {
  const body = { ...active.send, plan_id: active.plan.plan_id };
  const field = $("#plan-phrase");
  if (active.plan.confirm && field) body.confirm = field.value;
  return body;
}

async function run() {
  const session = active;
  if (!session || session.busy) return;
  session.busy = true;
  const btn = $("#plan-run");
  btn.disabled = true;
  try {
    const result = await api.request("POST", session.endpoint, confirmedBody());
    finish("ok", { result, plan: session.plan });
  } catch (err) {
    session.busy = false;
    if (active !== session) return;
    if (err.status === 401) {
      finish("err", err);
      return;
    }
    if (!PLAN_ERRORS.has(err.code)) {
      finish("err", err);
      return;
    }
    // The plan does not hold (any more): say why, in the dialog, and offer a fresh one.
    if (!dialog().open) open(session.plan);
    const message = describePlanError(err);
    setError(message);
    showError(err, "Run not started");
    btn.disabled = true;
    const field = $("#plan-phrase");
    if (field) field.disabled = true;
    const again = $("#plan-again");
    again.hidden = false;
    again.focus();
  }
}

async function planAgain() {
  const session = active;
  if (!session || session.busy) return;
  session.busy = true;
  setError(null);
  try {
    session.plan = await api.planOperation(session.planBody);
    session.busy = false;
    render(session.plan);
    focusStart();
    loadScriptTexts(session.plan);
  } catch (err) {
    session.busy = false;
    if (err.status === 401) {
      finish("err", err);
      return;
    }
    // The request itself no longer validates (a target left the inventory, …): the caller explains.
    finish("err", err);
  }
}

/** A run's refusal of the plan, in words: what changed, and what to do. */
export function describePlanError(err) {
  const d = err.details || {};
  switch (err.code) {
    case "PLAN_STALE": {
      const parts = (Array.isArray(d.changed) ? d.changed : []).map((c) => {
        if (c.what === "inventory_commit") return `the inventory moved from commit ${short(c.planned, 8)} to ${short(c.now, 8)}`;
        if (c.what === "script") return `script ${c.script} changed (sha256 ${short(c.planned)}… → ${short(c.now)}…)`;
        return String(c.what);
      });
      if (d.expired) parts.push("the plan expired (a plan is kept 15 minutes)");
      return `The plan is stale: ${parts.join("; ") || "it no longer holds"}. Nothing ran. Plan again to see what would run now.`;
    }
    case "PLAN_MISMATCH":
      return "This plan was made for a different request (scripts, targets, flags or concurrency changed). Nothing ran. Plan again.";
    case "PLAN_NOT_FOUND":
      return "The server does not know this plan (any more). Nothing ran. Plan again.";
    case "CONFIRMATION_REQUIRED":
      return `The server asks for a confirmation: ${d.reason || err.message}. Nothing ran. Plan again and type "${d.phrase || "the phrase"}".`;
    default:
      return err.message;
  }
}
