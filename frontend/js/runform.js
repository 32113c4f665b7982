// The "Run scripts" form: 1–10 scripts in the order picked, each script's declared flags
// (switches as checkboxes, "--x=default" / "--x=REQUIRED" with a value input), targets with
// enrollment badges and "select all enrolled", concurrency. Submits POST /api/operations/run.

import * as api from "./api.js";
import { $, badge, h, showError, toast } from "./dom.js";
import { store } from "./store.js";

export const MAX_SCRIPTS = 10;

let scripts = [];
let links = [];
let picked = []; // script ids in pick order
const flagState = new Map(); // `${script}\u0000${flag}` -> {on, value}
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
  $("#run-all-enrolled").addEventListener("click", () => {
    for (const box of document.querySelectorAll("#run-targets input[type=checkbox]")) {
      box.checked = box.dataset.enrolled === "true";
    }
    updateTargetCount();
  });
  $("#run-none").addEventListener("click", () => {
    for (const box of document.querySelectorAll("#run-targets input[type=checkbox]")) box.checked = false;
    updateTargetCount();
  });
  store.subscribe((list) => {
    links = list;
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
  renderTargets();
}

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
      });
      input.addEventListener("change", () => {
        if (input.checked) {
          if (picked.length >= MAX_SCRIPTS) {
            input.checked = false;
            toast(`At most ${MAX_SCRIPTS} scripts per operation`, "error");
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
      return h(
        "label",
        { class: `pick ${order >= 0 ? "pick-on" : ""}`, title: s.description },
        input,
        h("span", { class: "pick-order", text: order >= 0 ? String(order + 1) : "" }),
        h("span", { class: "pick-name", text: `${s.emoji ? `${s.emoji} ` : ""}${s.name}` }),
        h("span", { class: "pick-id mono muted", text: s.id }),
      );
    }),
  );
  $("#run-script-count").textContent = picked.length
    ? `(${picked.length} of max ${MAX_SCRIPTS}, runs in this order)`
    : `(pick 1–${MAX_SCRIPTS}, runs in the order picked)`;
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
      if (value) value.addEventListener("input", () => { st.value = value.value; });
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

function renderTargets() {
  const box = $("#run-targets");
  if (!box) return;
  const checked = new Set(
    [...document.querySelectorAll("#run-targets input:checked")].map((i) => i.value),
  );
  if (!links.length) {
    box.replaceChildren(h("p", { class: "empty", text: "No links in the inventory." }));
    return;
  }
  box.replaceChildren(
    ...links.map((l) =>
      h(
        "label",
        { class: "pick", title: `${l.ssh.user}@${l.ssh.host}:${l.ssh.port}` },
        h("input", { type: "checkbox", value: l.id, checked: checked.has(l.id), dataset: { enrolled: String(l.enrolled), target: l.id }, onchange: updateTargetCount }),
        h("span", { class: "pick-name", text: l.name }),
        h("span", { class: "muted small", text: l.type }),
        l.enrolled ? badge("enrolled ✓", "ok") : badge("not enrolled", "warn"),
      ),
    ),
  );
  updateTargetCount();
}

function updateTargetCount() {
  const n = document.querySelectorAll("#run-targets input:checked").length;
  $("#run-submit").textContent = n ? `Run on ${n} target${n === 1 ? "" : "s"}` : "Run";
}

/** Collect the form into the API body, or throw an Error naming what is missing. */
function collect() {
  if (!picked.length) throw new Error("Pick at least one script.");
  const targets = [...document.querySelectorAll("#run-targets input:checked")].map((i) => i.value);
  if (!targets.length) throw new Error("Pick at least one target.");
  const flags = {};
  for (const id of picked) {
    const s = scripts.find((x) => x.id === id);
    const out = [];
    for (const declared of s ? s.flags : []) {
      const f = parseFlag(declared);
      const st = flagState.get(`${id}\u0000${f.name}`) || { on: f.required, value: f.def };
      if (!st.on && !f.required) continue;
      if (f.takesValue) {
        if (f.required && !String(st.value).trim()) throw new Error(`${id}: ${f.name} needs a value.`);
        out.push(`${f.name}=${st.value}`);
      } else {
        out.push(f.name);
      }
    }
    if (out.length) flags[id] = out;
  }
  const concurrency = Number($("#run-concurrency").value);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error("Concurrency must be a whole number ≥ 1.");
  return { scripts: [...picked], flags, targets, concurrency, require_enrollment: true };
}

async function submit(ev) {
  ev.preventDefault();
  let body;
  try {
    body = collect();
  } catch (err) {
    toast(err.message, "error");
    return;
  }
  const btn = $("#run-submit");
  btn.disabled = true;
  try {
    const r = await api.runOperation(body);
    toast(`${r.operation_id} queued`, "ok");
    onStarted(r.operation_id, { scripts: body.scripts, targets: body.targets });
  } catch (err) {
    showError(err, "Run");
  } finally {
    btn.disabled = false;
  }
}
