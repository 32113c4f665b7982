// Links tab: the inventory as a searchable, filterable, sortable table with per-link actions
// (verify enrollment, open a terminal, details) and a topology view (topology.js).

import * as api from "./api.js";
import {
  $, badge, copyText, fmtTime, h, relTime, replaceKeepingFocus, s as svg, showError, statusKind, toast,
  typeIcon,
} from "./dom.js";
import { store } from "./store.js";
import { renderTopology } from "./topology.js";

let ctx = null;
let links = [];
let sort = { col: "name", dir: "asc" };
let view = "table";
let loaded = false;

const location_ = (l) => l.metadata.location || l.metadata.datacenter || "";

// Sortable columns: key, header, value used for sorting.
const COLUMNS = [
  { key: "status", label: "Status", value: (l) => l.status },
  { key: "name", label: "Name", value: (l) => l.name.toLowerCase() },
  { key: "type", label: "Type", value: (l) => l.type },
  { key: "location", label: "Location", value: (l) => location_(l) },
  { key: "ssh", label: "SSH", value: (l) => `${l.ssh.user}@${l.ssh.host}:${l.ssh.port}` },
  { key: "enrolled", label: "Enrollment", value: (l) => (l.enrolled ? 0 : 1) },
  { key: "latency", label: "Latency", value: (l) => l.health.latency ?? Infinity },
  { key: "lastSeen", label: "Last seen", value: (l) => -(Date.parse(l.health.lastSeen) || 0) },
  { key: "actions", label: "Actions", value: null },
];

export function init(context) {
  ctx = context;
  const headRow = $("#links-table thead tr");
  headRow.replaceChildren(
    ...COLUMNS.map((c) => {
      if (!c.value) return h("th", { scope: "col" }, h("span", { class: "sr-only", text: c.label }));
      const btn = h("button", { class: "th-sort", type: "button", text: c.label, dataset: { col: c.key } });
      btn.addEventListener("click", () => {
        sort = { col: c.key, dir: sort.col === c.key && sort.dir === "asc" ? "desc" : "asc" };
        render();
      });
      return h("th", { scope: "col", dataset: { col: c.key } }, btn);
    }),
  );
  for (const id of ["#links-type", "#links-status", "#links-enrolled"]) {
    $(id).addEventListener("change", render);
  }
  $("#links-search").addEventListener("input", render);
  $("#links-refresh").addEventListener("click", () => load(true));
  $("#links-view-table").addEventListener("click", () => setView("table"));
  $("#links-view-topology").addEventListener("click", () => setView("topology"));
  store.subscribe((list) => {
    links = list;
    if (loaded) render();
  });
}

export function show() {
  load(!loaded);
}

export function hide() {}

async function load(fresh) {
  try {
    links = await store.links(fresh);
    loaded = true;
    fillTypeFilter();
    render();
  } catch (err) {
    showError(err, "Loading links");
  }
}

function setView(v) {
  view = v;
  $("#links-view-table").setAttribute("aria-pressed", String(v === "table"));
  $("#links-view-topology").setAttribute("aria-pressed", String(v === "topology"));
  $("#links-table-wrap").hidden = v !== "table";
  $("#links-topology").hidden = v !== "topology";
  render();
}

function fillTypeFilter() {
  const select = $("#links-type");
  const current = select.value;
  const types = [...new Set(["VPS", "Proxmox", "VM", ...links.map((l) => l.type)])].filter(Boolean);
  select.replaceChildren(h("option", { value: "", text: "All" }), ...types.map((t) => h("option", { value: t, text: t })));
  select.value = types.includes(current) ? current : "";
}

function filtered() {
  const type = $("#links-type").value;
  const status = $("#links-status").value;
  const enrolled = $("#links-enrolled").value;
  const q = $("#links-search").value.trim().toLowerCase();
  return links.filter((l) => {
    if (type && l.type !== type) return false;
    if (status && l.status !== status) return false;
    if (enrolled && String(l.enrolled) !== enrolled) return false;
    if (!q) return true;
    const hay = [l.id, l.name, l.type, l.provider, l.ssh.host, l.ssh.user, l.enrollmentId,
      location_(l), ...l.tags].join(" ").toLowerCase();
    return hay.includes(q);
  });
}

function sorted(list) {
  const col = COLUMNS.find((c) => c.key === sort.col) || COLUMNS[1];
  const dir = sort.dir === "desc" ? -1 : 1;
  // Ties broken by id so the order is stable between refreshes.
  return [...list].sort((a, b) => {
    const va = col.value(a);
    const vb = col.value(b);
    if (va < vb) return -dir;
    if (va > vb) return dir;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

function render() {
  const list = sorted(filtered());
  $("#links-count").textContent = `${list.length} of ${links.length} links`;
  for (const th of document.querySelectorAll("#links-table th[data-col]")) {
    const on = th.dataset.col === sort.col;
    th.setAttribute("aria-sort", on ? (sort.dir === "asc" ? "ascending" : "descending") : "none");
  }
  if (view === "topology") {
    renderTopology($("#links-topology"), list, { onSelect: showDetails });
    return;
  }
  $("#links-empty").hidden = list.length > 0;
  replaceKeepingFocus($("#links-table tbody"), ...list.map(row));
}

function row(l) {
  const kind = statusKind(l.status);
  const enrolledCell = l.enrolled
    ? badge("enrolled ✓", "ok", l.enrollmentVerifiedAt ? `verified ${fmtTime(l.enrollmentVerifiedAt)}` : "")
    : badge("not enrolled", "warn", l.enrollment_error || l.enrollmentError || "");
  const copyBtn = h("button", {
    class: "btn btn-icon",
    type: "button",
    title: "Copy enrollment ID",
    "aria-label": `Copy enrollment ID of ${l.name}`,
    dataset: { focus: `copy:${l.id}` },
  }, copyIcon());
  copyBtn.addEventListener("click", async () => {
    const ok = await copyText(l.enrollmentId);
    toast(ok ? `Copied ${l.enrollmentId}` : "Copy failed: select the ID and copy it by hand", ok ? "ok" : "error");
  });
  const verifyBtn = h("button", { class: "btn btn-small", type: "button", text: "Verify", dataset: { action: "verify", focus: `verify:${l.id}` } });
  verifyBtn.addEventListener("click", () => verify(l, verifyBtn));
  const termBtn = h("button", {
    class: "btn btn-small",
    type: "button",
    text: "Terminal",
    dataset: { action: "terminal", focus: `terminal:${l.id}` },
    disabled: !l.enrolled,
    title: l.enrolled ? "Open a terminal in pane A" : "Only enrolled links can open a terminal",
  });
  termBtn.addEventListener("click", () => ctx.openTerminal(l.id));
  const detailsBtn = h("button", { class: "btn btn-small btn-ghost", type: "button", text: "Details", dataset: { action: "details", focus: `details:${l.id}` } });
  detailsBtn.addEventListener("click", () => showDetails(l));
  return h(
    "tr",
    { dataset: { link: l.id } },
    h("td", {}, h("span", { class: `dot dot-${kind}`, title: l.status }), h("span", { class: "sr-only", text: l.status })),
    h("td", {}, h("div", { class: "cell-name" }, typeIcon(l.type),
      h("div", { class: "name-stack" }, h("span", { class: "link-name", text: l.name }),
        l.name !== l.id ? h("span", { class: "muted small mono", text: l.id }) : null))),
    h("td", { text: l.type }),
    h("td", { text: location_(l) || "—" }),
    h("td", { class: "mono small cell-ssh", title: l.ssh.proxyJump ? `via ${l.ssh.proxyJump}` : "" },
      h("span", { text: `${l.ssh.user}@${l.ssh.host}:${l.ssh.port}` }),
      l.ssh.proxyJump ? h("span", { class: "muted", text: " ⤷" }) : null),
    h("td", {}, h("div", { class: "cell-id" }, enrolledCell,
      h("code", { class: "mono small", text: l.enrollmentId || "—", title: l.enrollmentId }), l.enrollmentId ? copyBtn : null)),
    h("td", { class: "num", text: l.health.latency !== null ? `${Math.round(l.health.latency)} ms` : "—" }),
    h("td", { text: relTime(l.health.lastSeen), title: l.health.lastSeen || "" }),
    h("td", { class: "cell-actions" }, verifyBtn, termBtn, detailsBtn),
  );
}

async function verify(l, btn) {
  btn.disabled = true;
  btn.textContent = "Verifying…";
  try {
    const r = (await api.verifyLink(l.id)) || {};
    if (r.enrolled) {
      toast(`${l.name}: enrolled ✓ (client ID matches)`, "ok");
    } else {
      const why = r.error || (r.client_id_found === false ? "no client ID file on the host" : "client ID does not match");
      toast(`${l.name}: not enrolled`, "error", why);
    }
    const fresh = await api.link(l.id).catch(() => ({ ...l, enrolled: Boolean(r.enrolled), enrollmentVerifiedAt: r.verified_at }));
    store.updateLink(fresh);
  } catch (err) {
    showError(err, `Verify ${l.name}`);
    btn.disabled = false;
    btn.textContent = "Verify";
  }
}

function copyIcon() {
  return svg("svg", { class: "type-icon icon-copy", viewBox: "0 0 24 24", "aria-hidden": "true" },
    svg("rect", { x: 8, y: 8, width: 12, height: 12, rx: 2 }),
    svg("path", { d: "M16 8V5a1 1 0 0 0-1-1H5a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h3" }));
}

/** The details dialog: every field as plain text. */
export function showDetails(l) {
  const dl = h("dl", { class: "details" });
  const add = (k, v) => {
    if (v === undefined || v === null || v === "") return;
    dl.append(h("dt", { text: k }), h("dd", { text: typeof v === "object" ? JSON.stringify(v, null, 2) : String(v) }));
  };
  add("ID", l.id);
  add("Name", l.name);
  add("Type", l.type);
  add("Provider", l.provider);
  add("Tags", l.tags.join(", "));
  add("Status", l.status);
  add("Enrolled", l.enrolled ? "yes" : "no");
  add("Enrollment ID", l.enrollmentId);
  add("Verified", l.enrollmentVerifiedAt ? fmtTime(l.enrollmentVerifiedAt) : "never");
  add("SSH", `${l.ssh.user}@${l.ssh.host}:${l.ssh.port}`);
  add("Proxy jump", l.ssh.proxyJump);
  add("Key", l.ssh.keyRef);
  add("Reachable", l.health.reachable ? "yes" : "no");
  add("Latency", l.health.latency !== null ? `${Math.round(l.health.latency)} ms` : null);
  add("Last seen", l.health.lastSeen ? fmtTime(l.health.lastSeen) : "never");
  for (const [k, v] of Object.entries(l.metadata)) add(`metadata.${k}`, v);
  $("#details-title").textContent = `${l.name} (${l.type})`;
  $("#details-body").replaceChildren(dl);
  const dialog = $("#details-dialog");
  if (!dialog.open) dialog.showModal();
}
