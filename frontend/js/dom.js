// DOM helpers shared by every view. Data from hosts, YAML and users only ever enters the page
// as text (textContent / text nodes / attribute values), never as HTML: h() has no innerHTML
// path at all, so a host that prints "<script>" shows those characters literally.

import { ApiError } from "./api.js";

/** Create an element: h("button", {class: "btn", onclick: fn, text: "Go"}, child, ...). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Same as h() for SVG elements (icons, topology lines). */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "value" && "value" in el) el.value = value;
    else if (key === "checked" || key === "selected" || key === "disabled") el[key] = Boolean(value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replace `container`'s children, keeping keyboard focus on the element with the same
 * data-focus key if it had focus (polled lists re-render every few seconds; without this a
 * keyboard user would lose their place on each refresh).
 *
 * A poll that changed nothing leaves the old nodes in place: the same markup means the same
 * data, so replacing them would only cost layout, drop a hover or a half-done click, and hand
 * a stale element to whoever held one (a screen reader's cursor, a test's driver).
 */
export function replaceKeepingFocus(container, ...nodes) {
  const fresh = document.createElement(container.tagName);
  appendAll(fresh, nodes);
  if (fresh.innerHTML === container.innerHTML) return;
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focus : null;
  container.replaceChildren(...fresh.childNodes);
  if (key) {
    const again = [...container.querySelectorAll("[data-focus]")].find((e) => e.dataset.focus === key);
    if (again) again.focus({ preventScroll: true });
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Parse an API time: ISO-8601 string or epoch milliseconds. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const d = typeof value === "number" ? new Date(value) : new Date(String(value));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function relTime(value) {
  const d = toDate(value);
  if (!d) return "—";
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  const abs = Math.abs(secs);
  const sfx = secs >= 0 ? " ago" : " from now";
  if (abs < 5) return "just now";
  if (abs < 60) return `${abs}s${sfx}`;
  if (abs < 3600) return `${Math.round(abs / 60)} min${sfx}`;
  if (abs < 86400) return `${Math.round(abs / 3600)} h${sfx}`;
  return `${Math.round(abs / 86400)} d${sfx}`;
}

export function fmtTime(value) {
  const d = toDate(value);
  return d ? d.toLocaleString() : "—";
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || seconds === "") return "—";
  const n = Number(seconds);
  if (!Number.isFinite(n)) return String(seconds);
  if (n < 1) return `${Math.round(n * 1000)} ms`;
  if (n < 60) return `${n.toFixed(n < 10 ? 1 : 0)}s`;
  const m = Math.floor(n / 60);
  const sec = Math.round(n % 60);
  return m < 60 ? `${m}m${String(sec).padStart(2, "0")}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}

// ---- notifications ------------------------------------------------------------------------

/** A toast that stays for `ms` (errors stay longer and can be dismissed). */
export function toast(message, kind = "info", detail = "", ms) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const close = h("button", { class: "toast-close", "aria-label": "Dismiss", text: "×" });
  const el = h(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("div", { class: "toast-body" }, h("div", { class: "toast-msg", text: message }),
      detail ? h("div", { class: "toast-detail", text: detail }) : null),
    close,
  );
  const remove = () => el.remove();
  close.addEventListener("click", remove);
  box.append(el);
  setTimeout(remove, ms ?? (kind === "error" ? 12000 : 4000));
  // Keep the stack short so an error storm cannot cover the page.
  while (box.children.length > 5) box.firstElementChild.remove();
}

/** One value of an error's details in words: {target, reason} reads "vm-01: reason". */
function describeItem(value) {
  if (value === null || typeof value !== "object") return String(value);
  if (Array.isArray(value)) return value.map(describeItem).join(", ");
  const who = value.target ?? value.id ?? value.entry ?? value.file;
  const why = value.reason ?? value.error ?? value.message;
  if (who !== undefined && why !== undefined) return `${who}: ${why}`;
  return Object.entries(value)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k.replace(/_/g, " ")} ${typeof v === "object" ? describeItem(v) : v}`)
    .join(", ");
}

/** Describe an error's details in one line of plain words. */
export function describeDetails(details) {
  if (!details || typeof details !== "object") return "";
  const parts = [];
  for (const [key, value] of Object.entries(details)) {
    if (value === null || value === undefined) continue;
    let text;
    if (Array.isArray(value)) text = value.map(describeItem).join("; ");
    else text = describeItem(value);
    parts.push(`${key.replace(/_/g, " ")}: ${text}`);
  }
  return parts.join(" · ");
}

/** Show any failure to the user; `context` says what was being done ("Verify vps-01"). */
export function showError(err, context = "") {
  if (err instanceof ApiError) {
    if (err.status === 401) return; // the app is already on its way back to the login page
    const msg = context ? `${context}: ${err.message}` : err.message;
    toast(msg, "error", [err.code, describeDetails(err.details)].filter(Boolean).join(" — "));
  } else {
    const msg = err && err.message ? err.message : String(err);
    toast(context ? `${context}: ${msg}` : msg, "error");
  }
}

/** Copy text to the clipboard with a fallback for non-secure origins (plain http on a LAN). */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the textarea method
  }
  const ta = h("textarea", { class: "offscreen", "aria-hidden": "true" });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** A small status pill; `kind` picks the colour (ok, bad, warn, info, muted). */
export function badge(text, kind = "muted", title) {
  return h("span", { class: `badge badge-${kind}`, text, title });
}

export function statusKind(status) {
  const s = String(status || "").toLowerCase();
  if (["success", "online", "ok", "enrolled", "connected", "completed"].includes(s)) return "ok";
  if (["failed", "offline", "error", "timeout", "interrupted"].includes(s)) return "bad";
  if (["partial", "stopped", "skipped", "connecting"].includes(s)) return "warn";
  if (["running", "queued"].includes(s)) return "info";
  return "muted";
}

/** Trigger a download of `text` as a file. */
export function downloadText(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const a = h("a", { href: url, download: filename, class: "offscreen" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A glyph per link type, drawn with SVG primitives (no external assets). */
export function typeIcon(type) {
  const t = String(type || "").toLowerCase();
  const svgEl = s("svg", { class: "type-icon", viewBox: "0 0 24 24", "aria-hidden": "true" });
  if (t === "proxmox") {
    svgEl.append(
      s("path", { d: "M12 3l8 4-8 4-8-4z" }),
      s("path", { d: "M4 11l8 4 8-4" }),
      s("path", { d: "M4 15l8 4 8-4" }),
    );
  } else if (t === "vm") {
    svgEl.append(
      s("rect", { x: 3, y: 4, width: 18, height: 12, rx: 1.5 }),
      s("path", { d: "M8 20h8M12 16v4" }),
    );
  } else {
    svgEl.append(
      s("rect", { x: 3, y: 4, width: 18, height: 6, rx: 1 }),
      s("rect", { x: 3, y: 13, width: 18, height: 6, rx: 1 }),
      s("path", { d: "M6 7h1M6 16h1" }),
    );
  }
  return svgEl;
}

/**
 * Ask before doing something that cannot be undone. Resolves true only when the operator
 * pressed the confirm button (Escape and Cancel resolve false). Focus starts on Cancel.
 */
export function confirmAction({ title, message, confirm = "OK" }) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-message").textContent = message;
  document.getElementById("confirm-ok").textContent = confirm;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

/**
 * `text` as nodes with every case-insensitive occurrence of `query` wrapped in <mark> (still
 * text only: the pieces are text nodes).
 */
export function highlight(text, query) {
  const value = String(text ?? "");
  const q = String(query || "").toLowerCase();
  if (!q) return [value];
  const lower = value.toLowerCase();
  const out = [];
  let at = 0;
  for (let i = lower.indexOf(q); i !== -1; i = lower.indexOf(q, at)) {
    if (i > at) out.push(value.slice(at, i));
    out.push(h("mark", { text: value.slice(i, i + q.length) }));
    at = i + q.length;
  }
  if (at < value.length) out.push(value.slice(at));
  return out;
}

/** {script: ["--a", "--b=v"]} → [["script", "--a --b=v"], …] (only scripts that have flags). */
export function flagEntries(flags) {
  if (!flags || typeof flags !== "object") return [];
  return Object.entries(flags)
    .filter(([, list]) => Array.isArray(list) && list.length)
    .map(([script, list]) => [script, list.join(" ")]);
}

// Script icons: our own line drawings picked by the script's tags, because the catalogue's
// emoji render as empty boxes where no emoji font is installed (servers, minimal desktops).
const SCRIPT_ICONS = [
  ["backup", ["M5 4h11l3 3v13H5z", "M8 4v5h7V4", "M8 14h8v6H8z"]],
  ["updates", ["M20 12a8 8 0 1 1-2.3-5.7", "M20 4v5h-5"]],
  ["cleanup", ["M4 20h16", "M7 20l1-9h8l1 9", "M10 11V4h4v7"]],
  ["monitoring", ["M3 12h4l2-6 4 12 2-6h6"]],
  ["inventory", ["M4 5h16v10H4z", "M9 19h6", "M12 15v4"]],
  ["demo", ["M7 3h10", "M7 21h10", "M8 3c0 5 8 5 8 9s-8 4-8 9", "M16 3c0 5-8 5-8 9s8 4 8 9"]],
];

export function scriptIcon(script) {
  const tags = new Set((script && script.tags) || []);
  const found = SCRIPT_ICONS.find(([tag]) => tags.has(tag));
  const paths = found ? found[1] : ["M5 5h14v14H5z", "M8 10l3 2-3 2", "M12 15h4"];
  const svgEl = s("svg", { class: "type-icon script-icon", viewBox: "0 0 24 24", "aria-hidden": "true" });
  for (const d of paths) svgEl.append(s("path", { d }));
  return svgEl;
}
