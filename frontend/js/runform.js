// The "Run scripts" form: 1–10 scripts in the order picked (with description and estimated
// duration), each script's declared flags (switches as checkboxes, "--x=default" /
// "--x=REQUIRED" with a value input), targets (search, type/tag chips, enrollment badges,
// "select all enrolled"), concurrency. Run plans first (POST /api/operations/plan) and goes
// through the plan dialog (plandialog.js) when the plan asks for a typed confirmation;
// "Plan…" always shows it. Then POST /api/operations/run with the plan_id.
//
// Everything that can grow scrolls in one area; the Run bar (warnings, errors, concurrency,
// Run) stays visible below it. An unenrolled target is flagged the moment it is ticked, with
// a one-click "run on the enrolled ones"; server refusals are explained in words.

import { $, badge, flagEntries, fmtDuration, h, scriptIcon, showError } from "./dom.js";
import { describePlanError, planAndConfirm } from "./plandialog.js";
import { store } from "./store.js";

export const MAX_SCRIPTS = 10;

let scripts = [];
let links = [];
let picked = []; // script ids in pick order
const selected = new Set(); // target ids (kept while the search hides them)
const flagState = new Map(); // `${script}\u0000${flag}` -> {on, value}
let chip = ""; // "type:VM" | "tag:prod" | ""
let onStarted = () => {};

/** "--x=REQUIRED" → {name:"--x", value:true, required:true}; "--dry-run" → switch. */
export function parseFlag(declared) {
  const i = declared.indexOf("=");
  if (i < 0) return { name: declared, takesValue: false, required: false, def: "" };
  const def = declared.slice(i + 1);
  return { name: declared.slice(0, i), takesValue: true, required: def === "REQUIRED", def: def === "REQUIRED" ? "" : def };
}

export function initRunForm(opts) {
  onStarted = opts.onStarted;
  $("#run-form").addEventListener("submit", submit);
  $("#run-review").addEventListener("click", (ev) => submit(ev, { always: true }));
  $("#run-all-enrolled").addEventListener("click", () => {
    selected.clear();
    for (const l of visibleLinks()) if (l.enrolled) selected.add(l.id);
    renderTargets();
  });
  $("#run-none").addEventListener("click", () => {
    selected.clear();
    renderTargets();
  });
  $("#run-target-search").addEventListener("input", renderTargets);
  store.subscribe((list) => {
    links = list;
    renderChips();
    renderTargets();
  });
}

export async function refreshRunForm() {
  try {
    [scripts, links] = await Promise.all([store.scripts(), store.links()]);
  } catch (err) {
    showError(err, "Loading scripts and targets");
    return;
  }
  picked = picked.filter((id) => scripts.some((s) => s.id === id));
  renderScripts();
  renderFlags();
  renderChips();
  renderTargets();
}

/**
 * Fill the form from an earlier operation ("Run again"): scripts in their order, the flags
 * exactly as given, targets and concurrency. Scripts or targets no longer in the inventory
 * are left out and named.
 */
export async function prefillRunForm({ scripts: ids, flags, targets, concurrency, from }) {
  await refreshRunForm();
  const missing = [];
  picked = [];
  for (const id of ids) {
    if (scripts.some((s) => s.id === id)) picked.push(id);
    else missing.push(id);
  }
  picked = picked.slice(0, MAX_SCRIPTS);
  const given = new Map(flagEntries(flags).map(([sid]) => [sid, flags[sid]]));
  for (const id of picked) {
    const s = scripts.find((x) => x.id === id);
    const passed = given.get(id) || [];
    for (const declared of s.flags) {
      const f = parseFlag(declared);
      const hit = passed.find((p) => p === f.name || p.startsWith(`${f.name}=`));
      const value = hit && hit.includes("=") ? hit.slice(hit.indexOf("=") + 1) : f.def;
      flagState.set(`${id}\u0000${f.name}`, { on: Boolean(hit) || f.required, value });
    }
  }
  selected.clear();
  for (const t of targets) {
    if (links.some((l) => l.id === t)) selected.add(t);
    else missing.push(t);
  }
  chip = "";
  $("#run-target-search").value = "";
  if (concurrency) $("#run-concurrency").value = String(concurrency);
  renderScripts();
  renderFlags();
  renderChips();
  renderTargets();
  setError(null);
  const note = missing.length ? ` (no longer in the inventory, left out: ${missing.join(", ")})` : "";
  setNote("#run-warning", from ? `Filled from ${from}${note}. Check and press Run.` : null, "info");
  $("#run-scroll").scrollTop = 0;
  $("#run-submit").focus();
}

/** Tick exactly these targets (Links → Run) and put the focus on the script list. */
export async function selectTargets(ids) {
  await refreshRunForm();
  selected.clear();
  for (const id of ids) if (links.some((l) => l.id === id)) selected.add(id);
  chip = "";
  $("#run-target-search").value = "";
  renderChips();
  renderTargets();
  const first = document.querySelector("#run-scripts input");
  if (first) first.focus();
}

// ---- scripts --------------------------------------------------------------------------------

function renderScripts() {
  const box = $("#run-scripts");
  if (!scripts.length) {
    box.replaceChildren(h("p", { class: "empty", text: "No scripts in the catalogue (sync the Git repository)." }));
    return;
  }
  box.replaceChildren(
    ...scripts.map((s) => {
      const order = picked.indexOf(s.id);
      const input = h("input", {
        type: "checkbox",
        value: s.id,
        checked: order >= 0,
        disabled: order < 0 && picked.length >= MAX_SCRIPTS,
        dataset: { script: s.id },
        "aria-describedby": `script-desc-${s.id}`,
      });
      input.addEventListener("change", () => {
        if (input.checked) {
          if (picked.length >= MAX_SCRIPTS) {
            input.checked = false;
            setError(`At most ${MAX_SCRIPTS} scripts per operation.`);
            return;
          }
          picked.push(s.id);
        } else {
          picked = picked.filter((id) => id !== s.id);
        }
        renderScripts();
        renderFlags();
        const again = document.querySelector(`#run-scripts input[data-script="${CSS.escape(s.id)}"]`);
        if (again) again.focus();
      });
      const est = Number(s.estimatedDuration);
      return h(
        "label",
        { class: `pick pick-script ${order >= 0 ? "pick-on" : ""}` },
        input,
        h("span", { class: "pick-order", text: order >= 0 ? String(order + 1) : "" }),
        scriptIcon(s),
        h("span", { class: "pick-main" },
          h("span", { class: "pick-title" },
            h("span", { class: "pick-name", text: s.name }),
            h("span", { class: "pick-id mono muted", text: s.id })),
          h("span", { class: "pick-desc muted small", id: `script-desc-${s.id}`, text: s.description || "No description.", title: s.description })),
        h("span", {
          class: "pick-est small",
          text: Number.isFinite(est) && s.estimatedDuration !== null ? `~${fmtDuration(est)}` : "",
          title: "Estimated duration (estimatedDuration in scripts.yaml)",
        }),
      );
    }),
  );
  $("#run-script-count").textContent = picked.length
    ? `(${picked.length} of max ${MAX_SCRIPTS}, runs in this order)`
    : `(pick 1–${MAX_SCRIPTS}, runs in the order picked)`;
  renderEstimate();
}

function renderEstimate() {
  const total = picked.reduce((sum, id) => {
    const s = scripts.find((x) => x.id === id);
    const v = s ? Number(s.estimatedDuration) : NaN;
    return sum + (Number.isFinite(v) ? v : 0);
  }, 0);
  $("#run-estimate").textContent = picked.length && total ? `~${fmtDuration(total)} per target` : "";
}

function renderFlags() {
  const box = $("#run-flags");
  const sections = [];
  for (const [i, id] of picked.entries()) {
    const s = scripts.find((x) => x.id === id);
    if (!s || !s.flags.length) continue;
    const rows = s.flags.map((declared) => {
      const f = parseFlag(declared);
      const key = `${id}\u0000${f.name}`;
      if (!flagState.has(key)) flagState.set(key, { on: f.required, value: f.def });
      const st = flagState.get(key);
      const toggle = h("input", {
        type: "checkbox",
        checked: st.on || f.required,
        disabled: f.required,
        "aria-label": `Pass ${f.name} to ${id}`,
        dataset: { flag: f.name, script: id },
      });
      const value = f.takesValue
        ? h("input", {
          type: "text",
          class: "flag-value",
          value: st.value,
          placeholder: f.required ? "required" : f.def,
          required: f.required,
          disabled: !(st.on || f.required),
          "aria-label": `Value for ${f.name} of ${id}`,
          dataset: { flagValue: f.name, script: id },
        })
        : null;
      toggle.addEventListener("change", () => {
        st.on = toggle.checked;
        if (value) value.disabled = !toggle.checked;
      });
      if (value) {
        value.addEventListener("input", () => {
          st.value = value.value;
          if (value.value.trim()) value.removeAttribute("aria-invalid");
        });
      }
      return h("div", { class: "flag-row" },
        h("label", { class: "flag-name" }, toggle, h("span", { class: "mono", text: f.name })),
        value ? h("span", { class: "mono muted", text: "=" }) : null,
        value,
        f.required ? badge("required", "warn") : null);
    });
    sections.push(h("fieldset", { class: "flags" },
      h("legend", { text: `Flags · [${i + 1}] ${s.name}` }), ...rows));
  }
  box.replaceChildren(...sections);
}

// ---- targets --------------------------------------------------------------------------------

function renderChips() {
  const box = $("#run-target-chips");
  if (!box) return;
  const types = [...new Set(links.map((l) => l.type).filter(Boolean))];
  const tags = [...new Set(links.flatMap((l) => l.tags))].sort();
  const make = (value, label) => {
    const btn = h("button", {
      class: "chip", type: "button", text: label, "aria-pressed": String(chip === value), dataset: { chip: value },
    });
    btn.addEventListener("click", () => {
      chip = chip === value ? "" : value;
      renderChips();
      renderTargets();
      const again = document.querySelector(`#run-target-chips [data-chip="${CSS.escape(value)}"]`);
      if (again) again.focus();
    });
    return btn;
  };
  box.replaceChildren(...types.map((t) => make(`type:${t}`, t)), ...tags.map((t) => make(`tag:${t}`, `#${t}`)));
}

function visibleLinks() {
  const q = $("#run-target-search").value.trim().toLowerCase();
  return links.filter((l) => {
    if (chip.startsWith("type:") && l.type !== chip.slice(5)) return false;
    if (chip.startsWith("tag:") && !l.tags.includes(chip.slice(4))) return false;
    if (!q) return true;
    return [l.id, l.name, l.type, l.ssh.host, ...l.tags].join(" ").toLowerCase().includes(q);
  });
}

function renderTargets() {
  const box = $("#run-targets");
  if (!box) return;
  for (const id of [...selected]) if (!links.some((l) => l.id === id)) selected.delete(id);
  if (!links.length) {
    box.replaceChildren(h("p", { class: "empty", text: "No links in the inventory." }));
    updateTargets();
    return;
  }
  const shown = visibleLinks();
  const focusedId = document.activeElement && box.contains(document.activeElement)
    ? document.activeElement.dataset.target : null;
  box.replaceChildren(...[
    ...shown.map((l) => {
      const input = h("input", {
        type: "checkbox", value: l.id, checked: selected.has(l.id),
        dataset: { enrolled: String(l.enrolled), target: l.id },
      });
      input.addEventListener("change", () => {
        if (input.checked) selected.add(l.id);
        else selected.delete(l.id);
        updateTargets();
      });
      return h(
        "label",
        { class: `pick ${selected.has(l.id) ? "pick-on" : ""}`, title: `${l.ssh.user}@${l.ssh.host}:${l.ssh.port}` },
        input,
        h("span", { class: "pick-name", text: l.name }),
        h("span", { class: "muted small", text: l.type }),
        l.enrolled ? badge("enrolled ✓", "ok") : badge("not enrolled", "warn"),
      );
    }),
    shown.length ? null : h("p", { class: "empty", text: "No target matches the search." }),
  ].filter(Boolean));
  if (focusedId) {
    const again = box.querySelector(`input[data-target="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
  updateTargets();
}

function unenrolledSelected() {
  return links.filter((l) => selected.has(l.id) && !l.enrolled);
}

/** Button text, the count, and the inline warning about unenrolled targets. */
function updateTargets() {
  const n = selected.size;
  $("#run-submit").textContent = n ? `Run on ${n} target${n === 1 ? "" : "s"}` : "Run";
  $("#run-target-count").textContent = n ? `(${n} selected)` : "";
  for (const label of document.querySelectorAll("#run-targets .pick")) {
    const box = label.querySelector("input");
    label.classList.toggle("pick-on", box.checked);
  }
  const bad = unenrolledSelected();
  const box = $("#run-warning");
  if (!bad.length) {
    if (box.dataset.kind === "enrollment") setNote("#run-warning", null);
    return;
  }
  const good = n - bad.length;
  const names = bad.map((l) => l.name === l.id ? l.id : `${l.name} (${l.id})`).join(", ");
  const message = `${names} ${bad.length === 1 ? "is" : "are"} not enrolled: the server will refuse this run. Enroll ${bad.length === 1 ? "it" : "them"} first (Links → Details), or leave ${bad.length === 1 ? "it" : "them"} out.`;
  setNote("#run-warning", message, "warn", "enrollment");
  if (good > 0) {
    const btn = h("button", {
      class: "btn btn-small", type: "button", id: "run-enrolled-only",
      text: `Run on the ${good} enrolled target${good === 1 ? "" : "s"}`,
    });
    btn.addEventListener("click", () => {
      for (const l of bad) selected.delete(l.id);
      renderTargets();
      $("#run-form").requestSubmit();
    });
    box.append(" ", btn);
  }
}

// ---- notes and errors -----------------------------------------------------------------------

function setNote(sel, message, kind = "warn", tag = "") {
  const box = $(sel);
  if (!message) {
    box.hidden = true;
    box.replaceChildren();
    delete box.dataset.kind;
    return;
  }
  box.hidden = false;
  box.className = `run-note run-${sel === "#run-error" ? "error" : "warning"} note-${kind}`;
  box.dataset.kind = tag || kind;
  box.replaceChildren(h("span", { text: message }));
}

function setError(message) {
  setNote("#run-error", message, "bad");
}

/** A refusal of POST /api/operations/run in words an operator can act on. */
export function describeRunError(err) {
  const d = err.details || {};
  switch (err.code) {
    case "ENROLLMENT_REQUIRED": {
      const offenders = Array.isArray(d.offenders) ? d.offenders : (d.targets || []).map((t) => ({ target: t }));
      const list = offenders.map((o) => (o.reason ? `${o.target} (${o.reason})` : o.target)).join("; ");
      return `Not run: ${offenders.length === 1 ? "this target is" : "these targets are"} not enrolled — ${list}. ` +
        "Enroll them first (Links → Details shows how) or run on the enrolled targets only.";
    }
    case "INVALID_FLAG":
      return `Not run: a flag was refused — ${(d.problems || [err.message]).join("; ")}.`;
    case "SCRIPT_NOT_FOUND":
      return `Not run: ${(d.scripts || []).join(", ") || "a script"} is no longer in the catalogue. Sync the Git repository and pick again.`;
    case "LINK_NOT_FOUND":
      return `Not run: ${(d.targets || []).join(", ") || "a target"} is no longer in the inventory. Sync the Git repository and pick again.`;
    case "SCRIPT_HASH_MISMATCH":
      return `Not run: the file of ${d.script || "a script"} changed since the last sync. Sync the Git repository, then run again.`;
    case "NON_BASH_SCRIPT":
      return `Not run: ${(d.scripts || []).join(", ")} ${d.scripts && d.scripts.length === 1 ? "is" : "are"} not bash scripts.`;
    case "SERVICE_SHUTTING_DOWN":
      return "Not run: the LinkOps service is shutting down. Try again once it is back.";
    case "PLAN_STALE":
    case "PLAN_MISMATCH":
    case "PLAN_NOT_FOUND":
    case "CONFIRMATION_REQUIRED":
      return `Not run: ${describePlanError(err)}`;
    case "NETWORK_ERROR":
      return `Not run: ${err.message}`;
    default:
      return `Not run: ${err.message}`;
  }
}

/** Collect the form into the API body, or throw an Error (with .field to focus) naming what is missing. */
function collect() {
  if (!picked.length) throw Object.assign(new Error("Pick at least one script."), { field: "#run-scripts input" });
  const targets = links.filter((l) => selected.has(l.id)).map((l) => l.id);
  if (!targets.length) throw Object.assign(new Error("Pick at least one target."), { field: "#run-targets input" });
  const flags = {};
  for (const id of picked) {
    const s = scripts.find((x) => x.id === id);
    const out = [];
    for (const declared of s ? s.flags : []) {
      const f = parseFlag(declared);
      const st = flagState.get(`${id}\u0000${f.name}`) || { on: f.required, value: f.def };
      if (!st.on && !f.required) continue;
      if (f.takesValue) {
        if (f.required && !String(st.value).trim()) {
          throw Object.assign(new Error(`${s.name}: ${f.name} needs a value.`), {
            field: `#run-flags input[data-script="${CSS.escape(id)}"][data-flag-value="${CSS.escape(f.name)}"]`,
            invalid: true,
          });
        }
        out.push(`${f.name}=${st.value}`);
      } else {
        out.push(f.name);
      }
    }
    if (out.length) flags[id] = out;
  }
  const concurrency = Number($("#run-concurrency").value);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw Object.assign(new Error("Concurrency must be a whole number ≥ 1."), { field: "#run-concurrency", invalid: true });
  }
  return { scripts: [...picked], flags, targets, concurrency, require_enrollment: true };
}

async function submit(ev, { always = false } = {}) {
  ev.preventDefault();
  let body;
  setError(null);
  for (const el of document.querySelectorAll("#run-form [aria-invalid]")) el.removeAttribute("aria-invalid");
  try {
    body = collect();
  } catch (err) {
    setError(err.message);
    const field = err.field ? document.querySelector(err.field) : null;
    if (field) {
      if (err.invalid) field.setAttribute("aria-invalid", "true");
      field.scrollIntoView({ block: "nearest" });
      field.focus();
    }
    return;
  }
  const buttons = [$("#run-submit"), $("#run-review")];
  const opener = buttons.includes(document.activeElement) ? document.activeElement : buttons[0];
  for (const b of buttons) b.disabled = true;
  try {
    const done = await planAndConfirm(body, { always, opener });
    if (!done) return; // cancelled in the plan dialog
    if ($("#run-warning").dataset.kind === "info") setNote("#run-warning", null);
    // No "queued" toast: the output pane shows the operation's live status from here on.
    onStarted(done.result.operation_id, { scripts: body.scripts, targets: body.targets, flags: body.flags, concurrency: body.concurrency });
  } catch (err) {
    if (err.status === 401) return;
    setError(describeRunError(err));
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}
