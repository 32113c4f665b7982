// Links tab: the inventory as a searchable, filterable, sortable table with per-link actions
// (verify enrollment, open a terminal, details), the topology diagram beside it (topology.js)
// and a details panel per link (#links/<id>): connection, health, enrollment — and when the
// host is not enrolled, why and the steps to enroll it.
//
// Search: name, id, type, provider, host, user, location and tags; enrollment IDs only when
// the query starts with "LINKOPS-" (a short query such as "db" would otherwise match hosts
// through the hex of their IDs). What matched is highlighted.

import * as api from "./api.js";
import {
  $, badge, copyText, fmtTime, h, highlight, relTime, replaceKeepingFocus, s as svg, showError,
  statusKind, toast, typeIcon,
} from "./dom.js";
import { store } from "./store.js";
import { renderTopology } from "./topology.js";

let ctx = null;
let links = [];
let sort = { col: "name", dir: "asc" };
let view = "table";
let loaded = false;
let detailsId = null; // the link shown in the details panel
let wantedDetails = null; // from the URL, before the list is loaded
let pendingType = null; // a type filter asked for before the type list exists

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
    if (detailsId && $("#details-dialog").open) {
      const l = links.find((x) => x.id === detailsId);
      if (l) renderDetails(l);
    }
  });
  $("#details-dialog").addEventListener("close", () => {
    if (!detailsId) return;
    detailsId = null;
    if (location.hash.startsWith("#links/")) ctx.setRoute("links", null, { replace: true });
  });
}

export function show() {
  load(!loaded);
}

/** Routing: #links/<id> opens that link's details; #links closes them. */
export function route(arg) {
  if (!arg) {
    wantedDetails = null; // "#links" closes the details, pending ones too
    if ($("#details-dialog").open && detailsId) $("#details-dialog").close();
    return;
  }
  if (detailsId === arg && $("#details-dialog").open) return;
  const l = links.find((x) => x.id === arg);
  if (l) showDetails(l, { fromRoute: true });
  else wantedDetails = arg; // opened once the list is loaded
}

/** Show only links of `type` (the Overview's infrastructure rows link here). */
export function filterByType(type) {
  pendingType = type;
  const select = $("#links-type");
  if ([...select.options].some((o) => o.value === type)) {
    select.value = type;
    pendingType = null;
    if (loaded) render();
  }
}

export function routeArg() {
  return detailsId;
}

export function hide() {
  // Another tab was chosen (or the URL names one): the details belong to this tab, and a
  // request from the URL still waiting for the list is void too (it would open them later,
  // over whatever the user went on to do).
  wantedDetails = null;
  if ($("#details-dialog").open) $("#details-dialog").close();
}

async function load(fresh) {
  try {
    links = await store.links(fresh);
    loaded = true;
    fillTypeFilter();
    render();
    if (wantedDetails) {
      const id = wantedDetails;
      wantedDetails = null;
      const l = links.find((x) => x.id === id);
      if (l) showDetails(l, { fromRoute: true });
      else toast(`No link ${id} in the inventory`, "error");
    }
  } catch (err) {
    showError(err, "Loading links");
  }
}

function setView(v) {
  view = v;
  $("#links-view-table").setAttribute("aria-pressed", String(v === "table"));
  $("#links-view-topology").setAttribute("aria-pressed", String(v === "topology"));
  // The diagram is shown beside the table, never instead of it.
  $("#links-layout").classList.toggle("with-topology", v === "topology");
  $("#links-topology").hidden = v !== "topology";
  render();
}

function fillTypeFilter() {
  const select = $("#links-type");
  const current = select.value;
  const types = [...new Set(["VPS", "Proxmox", "VM", ...links.map((l) => l.type)])].filter(Boolean);
  select.replaceChildren(h("option", { value: "", text: "All" }), ...types.map((t) => h("option", { value: t, text: t })));
  const want = pendingType || current;
  pendingType = null;
  select.value = types.includes(want) ? want : "";
}

const query = () => $("#links-search").value.trim().toLowerCase();

/** Does link `l` match search `q` (lower case)? Enrollment IDs only on a "linkops-" prefix. */
export function matchesQuery(l, q) {
  if (!q) return true;
  if (q.startsWith("linkops-")) return l.enrollmentId.toLowerCase().startsWith(q);
  return [l.id, l.name, l.type, l.provider, l.ssh.host, l.ssh.user, location_(l), ...l.tags]
    .some((v) => String(v || "").toLowerCase().includes(q));
}

function filtered() {
  const type = $("#links-type").value;
  const status = $("#links-status").value;
  const enrolled = $("#links-enrolled").value;
  const q = query();
  return links.filter((l) => {
    if (type && l.type !== type) return false;
    if (status && l.status !== status) return false;
    if (enrolled && String(l.enrolled) !== enrolled) return false;
    return matchesQuery(l, q);
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
  if (view === "topology") renderTopology($("#links-topology"), list, { onSelect: (l) => showDetails(l) });
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
  const runBtn = h("button", { class: "btn btn-small", type: "button", text: "Run", title: "Run scripts on this link", dataset: { action: "run", focus: `run:${l.id}` } });
  runBtn.addEventListener("click", () => ctx.runOn([l.id]));
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
  const q = query();
  const idQuery = q.startsWith("linkops-");
  const mark = (text) => (idQuery ? [String(text ?? "")] : highlight(text, q));
  const tagHits = q && !idQuery ? l.tags.filter((t) => t.toLowerCase().includes(q)) : [];
  return h(
    "tr",
    { dataset: { link: l.id } },
    h("td", {}, h("span", { class: `dot dot-${kind}`, title: l.status }), h("span", { class: "sr-only", text: l.status })),
    h("td", {}, h("div", { class: "cell-name" }, typeIcon(l.type),
      h("div", { class: "name-stack" }, h("span", { class: "link-name" }, mark(l.name)),
        l.name !== l.id ? h("span", { class: "muted small mono" }, mark(l.id)) : null,
        tagHits.length ? h("span", { class: "muted small tag-hits" }, "tag ", ...tagHits.flatMap((t) => ["#", ...mark(t), " "])) : null))),
    h("td", {}, mark(l.type)),
    h("td", {}, location_(l) ? mark(location_(l)) : "—"),
    h("td", { class: "mono small cell-ssh", title: l.ssh.proxyJump ? `via ${l.ssh.proxyJump}` : "" },
      h("span", {}, mark(`${l.ssh.user}@${l.ssh.host}:${l.ssh.port}`)),
      l.ssh.proxyJump ? h("span", { class: "muted", text: " ↪" }) : null),
    h("td", {}, h("div", { class: "cell-id" }, enrolledCell,
      h("code", { class: "mono small", title: l.enrollmentId }, idQuery ? highlight(l.enrollmentId || "—", q) : l.enrollmentId || "—"), l.enrollmentId ? copyBtn : null)),
    h("td", { class: "num", text: l.health.latency !== null ? `${Math.round(l.health.latency)} ms` : "—" }),
    h("td", { text: relTime(l.health.lastSeen), title: l.health.lastSeen || "" }),
    h("td", { class: "cell-actions" }, verifyBtn, termBtn, runBtn, detailsBtn),
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

const META_LABELS = { location: "Location", datacenter: "Datacenter", os: "Operating system", parent: "Parent", role: "Role", owner: "Owner" };
const dirname = (path) => path.slice(0, Math.max(1, path.lastIndexOf("/"))) || "/";

/** A command with a Copy button (the command is text, selectable as well). */
function commandBlock(text, label) {
  const btn = h("button", { class: "btn btn-small", type: "button", text: "Copy", "aria-label": `Copy: ${label}` });
  btn.addEventListener("click", async () => {
    const ok = await copyText(text);
    toast(ok ? "Copied" : "Copy failed: select the text and copy it by hand", ok ? "ok" : "error");
  });
  return h("div", { class: "cmd" }, h("pre", { class: "cmd-text", text }), btn);
}

function section(title, ...rows) {
  const dl = h("dl", { class: "details" });
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(h("dt", { text: k }), h("dd", {}, v));
  }
  return h("section", { class: "details-section" }, h("h3", { text: title }), dl);
}

/** Why the host is not enrolled, in words, from the last verification. */
function notEnrolledReason(l) {
  if (l.enrollmentError) return l.enrollmentError;
  if (!l.enrollmentVerifiedAt) return "It has not been verified yet.";
  return "The client ID on the host does not match the one in links.yaml.";
}

function enrollmentSection(l) {
  if (l.enrolled) {
    return section("Enrollment",
      ["Status", badge("enrolled ✓", "ok")],
      ["Verified", fmtTime(l.enrollmentVerifiedAt)],
      ["Enrollment ID", h("code", { class: "mono", text: l.enrollmentId })],
      ["ID file on the host", h("code", { class: "mono", text: l.clientIdPath })]);
  }
  const path = l.clientIdPath;
  const id = l.enrollmentId;
  const steps = h("ol", { class: "enroll-steps" },
    id
      ? h("li", {}, h("span", { text: `links.yaml declares the enrollment ID ${id} for ${l.id}.` }))
      : h("li", {}, h("span", { text: "Make an enrollment ID on the LinkOps server and put it in links.yaml as enrollment.clientId of this link (then commit, push, Sync):" }),
        commandBlock("linkops enroll-id", "make an enrollment ID")),
    h("li", {}, h("span", { text: `As root on ${l.name} (${l.ssh.host}), write it to ${path}, readable by ${l.ssh.user || "the SSH user"}:` }),
      commandBlock(`install -d -m 755 ${dirname(path)}\necho '${id || "LINKOPS-…"}' > ${path}\nchmod 644 ${path}`, `write the ID to ${path}`)),
    h("li", {}, h("span", { text: "Press Verify: LinkOps reads the file over SSH and compares it." })));
  return h("section", { class: "details-section details-enroll" },
    h("h3", { text: "Enrollment" }),
    h("p", { class: "enroll-why" }, badge("not enrolled", "warn"), " ", h("span", { class: "why-text", text: notEnrolledReason(l) })),
    l.enrollmentVerifiedAt ? h("p", { class: "muted small", text: `Last checked ${fmtTime(l.enrollmentVerifiedAt)}` }) : null,
    h("p", { class: "small", text: "Until it is enrolled, LinkOps runs no scripts and opens no terminal on this host. To enroll it:" }),
    steps);
}

function renderDetails(l) {
  const kind = statusKind(l.status);
  const latency = l.health.latency !== null ? `${Math.round(l.health.latency)} ms` : null;
  const verifyBtn = h("button", { class: "btn", type: "button", text: "Verify", id: "details-verify" });
  verifyBtn.addEventListener("click", () => verify(l, verifyBtn));
  const termBtn = h("button", {
    class: "btn", type: "button", text: "Terminal", id: "details-terminal", disabled: !l.enrolled,
    title: l.enrolled ? "Open a terminal in pane A" : "Only enrolled links can open a terminal",
  });
  termBtn.addEventListener("click", () => {
    $("#details-dialog").close();
    ctx.openTerminal(l.id);
  });
  const runBtn = h("button", { class: "btn btn-primary", type: "button", text: "Run scripts…", id: "details-run" });
  runBtn.addEventListener("click", () => {
    $("#details-dialog").close();
    ctx.runOn([l.id]);
  });
  const otherMeta = Object.entries(l.metadata)
    .filter(([k]) => k !== "icon")
    .map(([k, v]) => [META_LABELS[k] || k.replace(/[_-]/g, " ").replace(/^./, (c) => c.toUpperCase()),
      typeof v === "object" ? JSON.stringify(v) : String(v)]);
  $("#details-title").replaceChildren(typeIcon(l.type), " ", l.name);
  $("#details-body").replaceChildren(...[
    h("div", { class: "details-head" },
      h("span", { class: `dot dot-${kind}` }),
      h("span", { text: `${l.type}${l.provider ? ` · ${l.provider}` : ""} · ${l.status}` }),
      h("code", { class: "mono muted small", text: l.id }),
      h("span", { class: "spacer" }),
      verifyBtn, termBtn, runBtn),
    // Not enrolled: that is what needs doing, so it comes first.
    l.enrolled ? null : enrollmentSection(l),
    section("Connection",
      ["SSH", h("code", { class: "mono", text: `${l.ssh.user}@${l.ssh.host}:${l.ssh.port}` })],
      ["Reached through", l.ssh.proxyJump ? `${l.ssh.proxyJump} (SSH jump host)` : "directly"],
      ["SSH key", l.ssh.keyRef],
      ["Tags", l.tags.length ? l.tags.map((t) => `#${t}`).join(" ") : null],
      ...otherMeta),
    section("Health",
      ["Reachable", l.health.reachable ? "yes" : "no"],
      ["Latency", latency],
      ["Last seen", l.health.lastSeen ? `${relTime(l.health.lastSeen)} (${fmtTime(l.health.lastSeen)})` : "never"],
      ["Last error", l.health.error || null]),
    l.enrolled ? enrollmentSection(l) : null,
  ].filter(Boolean));
}

/** The details panel of one link; its URL is #links/<id>. */
export function showDetails(l, { fromRoute = false } = {}) {
  wantedDetails = null; // whatever is opened now supersedes a pending open from the URL
  detailsId = l.id;
  renderDetails(l);
  if (!fromRoute && ctx) ctx.setRoute("links", l.id);
  const dialog = $("#details-dialog");
  if (!dialog.open) dialog.showModal();
}
