// Overview tab: tbl_infrastructure, tbl_recent_activity and tbl_link_health through the table
// query endpoint, refreshed every few seconds while the tab (and the browser tab) is visible.
// Every row is a link to what it describes: an infrastructure row to the Links table of that
// type, an operation to #operations/<id>, an SSH session or a health row to #links/<id>.

import * as api from "./api.js";
import { $, badge, h, relTime, replaceKeepingFocus, showError, statusKind, typeIcon } from "./dom.js";
import { store } from "./store.js";

const POLL_MS = 5000;
let timer = null;
let ctx = null;
let inFlight = false;
let lastErrorShown = 0;
let scriptNames = new Map(); // id -> name, for the activity list

export function init(context) {
  ctx = context;
  $("#activity-all").addEventListener("click", () => ctx.navigate("operations"));
}

export function show() {
  if (timer) return;
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

export function hide() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  if (inFlight || document.hidden) return;
  inFlight = true;
  try {
    const [infra, activity, health] = await Promise.all([
      api.tableQuery("tbl_infrastructure"),
      api.tableQuery("tbl_recent_activity", {
        sort: [{ col: "at", dir: "desc" }],
        page: { size: 8 },
      }),
      api.tableQuery("tbl_link_health", { page: { size: 200 } }),
    ]);
    if (!scriptNames.size) {
      scriptNames = new Map((await store.scripts().catch(() => [])).map((x) => [x.id, x.name]));
    }
    renderInfra(infra);
    renderActivity(activity);
    renderHealth(health);
  } catch (err) {
    // A poll failing every 5 s must not flood the screen: one toast per minute at most.
    if (Date.now() - lastErrorShown > 60000) {
      lastErrorShown = Date.now();
      showError(err, "Refreshing the overview");
    }
  } finally {
    inFlight = false;
  }
}

const TYPE_LABEL = { VPS: "VPS", Proxmox: "Proxmox hosts", VM: "Virtual machines" };
const INFRA_ORDER = { VPS: 0, Proxmox: 1, VM: 2 };

function renderInfra({ rows, meta }) {
  const body = $("#infra-body");
  $("#infra-asof").textContent = meta.as_of ? `as of ${relTime(meta.as_of)}` : "";
  if (!rows.length) {
    body.replaceChildren(h("p", { class: "empty", text: "No links in the inventory yet." }));
    return;
  }
  rows = [...rows].sort((a, b) => (INFRA_ORDER[a.type] ?? 9) - (INFRA_ORDER[b.type] ?? 9));
  const total = rows.reduce((n, r) => n + Number(r.total || 0), 0);
  const enrolled = rows.reduce((n, r) => n + Number(r.enrolled || 0), 0);
  const online = rows.reduce((n, r) => n + Number(r.online || 0), 0);
  replaceKeepingFocus(body,
    h(
      "ul",
      { class: "infra-list" },
      rows.map((r) =>
        h(
          "li",
          { class: "infra-item" },
          h("a", {
            class: "infra-row", href: "#links", dataset: { focus: `infra:${r.type}`, type: r.type },
            title: `Show the ${TYPE_LABEL[r.type] || r.type} in Links`,
            onclick: (ev) => {
              ev.preventDefault();
              ctx.showLinksOfType(r.type);
            },
          },
          typeIcon(r.type),
          h("span", { class: "infra-count", text: r.total ?? 0 }),
          h("span", { class: "infra-text" },
          h("span", { class: "infra-label", text: TYPE_LABEL[r.type] || r.type || "Other" }),
          h(
            "span",
            { class: "infra-sub" },
            badge(`${r.online ?? 0} online`, Number(r.online) ? "ok" : "muted"),
            Number(r.offline) ? badge(`${r.offline} offline`, "bad") : null,
            badge(`${r.enrolled ?? 0}/${r.total ?? 0} enrolled`,
              Number(r.enrolled) === Number(r.total) ? "ok" : "warn"),
          ))),
        ),
      ),
    ),
    h("p", { class: "infra-total muted", text: `${total} links · ${online} online · ${enrolled} enrolled` }),
  );
}

function parseList(value) {
  if (Array.isArray(value)) return value;
  if (typeof value !== "string") return [];
  try {
    const parsed = JSON.parse(value);
    return Array.isArray(parsed) ? parsed : [String(parsed)];
  } catch {
    return value ? [value] : [];
  }
}

function activityText(r) {
  if (r.kind === "operation") {
    const scripts = parseList(r.detail).map((id) => scriptNames.get(id) || id).join(", ") || "scripts";
    const targets = parseList(r.target);
    const on = targets.length > 2 ? `${targets.slice(0, 2).join(", ")} +${targets.length - 2}` : targets.join(", ");
    return `${r.ref}: ${scripts} on ${on || "no targets"}`;
  }
  return `SSH session on ${r.target || "?"}`;
}

function renderActivity({ rows }) {
  const body = $("#activity-body");
  if (!rows.length) {
    body.replaceChildren(h("p", { class: "empty", text: "Nothing has happened yet." }));
    return;
  }
  replaceKeepingFocus(body,
    h(
      "ul",
      { class: "activity-list" },
      rows.map((r) => {
        const kind = statusKind(r.status);
        const mark = kind === "ok" ? "✓" : kind === "bad" ? "✕" : kind === "info" ? "◌" : "•";
        const href = r.kind === "operation" ? `#operations/${encodeURIComponent(r.ref)}`
          : r.target ? `#links/${encodeURIComponent(r.target)}` : "#operations";
        const item = h("li", { class: "activity-item" }, h(
          "a",
          {
            class: `activity-row activity-${kind}`, href, dataset: { focus: `activity:${r.kind}:${r.ref}` },
            title: r.kind === "operation" ? `Open operation ${r.ref}` : `Open ${r.target}`,
          },
          h("span", { class: `activity-mark mark-${kind}`, "aria-hidden": "true", text: mark }),
          h("span", { class: "activity-text", text: activityText(r) }),
          badge(String(r.status || ""), kind),
          h("span", { class: "muted activity-when", text: relTime(r.at), title: r.at || "" }),
        ));
        return item;
      }),
    ),
  );
}

const TYPE_ORDER = { VPS: 0, Proxmox: 1, VM: 2 };

function renderHealth({ rows, meta }) {
  const body = $("#health-body");
  $("#health-asof").textContent = meta.as_of ? `as of ${relTime(meta.as_of)}` : "";
  if (!rows.length) {
    body.replaceChildren(h("p", { class: "empty", text: "No links to check." }));
    return;
  }
  // Same order as the topology: VPS, Proxmox, VMs, then by name.
  rows = [...rows].sort((a, b) => (TYPE_ORDER[a.type] ?? 9) - (TYPE_ORDER[b.type] ?? 9) ||
    String(a.name || a.id).localeCompare(String(b.name || b.id)));
  // Latency as a number coloured by threshold; the bar grows with latency (square-root scale,
  // full at 1 s: 30 ms is a short bar, 300 ms half of it), so a longer bar is a slower link.
  // Offline links show a full red bar.
  replaceKeepingFocus(body,
    h("div", { class: "health-row health-header", "aria-hidden": "true" },
      h("span"), h("span", { text: "Link" }), h("span", { text: "SSH latency" }), h("span", { text: "" }),
      h("span", { text: "Last seen" }), h("span", { text: "Enrollment" })),
    h(
      "ul",
      { class: "health-list" },
      rows.map((r) => {
        const status = String(r.status || "unknown");
        const latency = r.latency_ms === null || r.latency_ms === undefined ? null : Number(r.latency_ms);
        const kind = latencyKind(status, latency);
        const width = status === "online" && latency !== null
          ? Math.min(100, Math.max(3, Math.sqrt(latency / 1000) * 100))
          : status === "offline" ? 100 : 0;
        const label = status === "online"
          ? (latency !== null ? `${Math.round(latency)} ms` : "online")
          : status === "offline" ? "offline" : "unknown";
        return h("li", { class: "health-item" }, h(
          "a",
          {
            class: "health-row", href: `#links/${encodeURIComponent(r.id)}`, title: r.health_error || `Details of ${r.name || r.id}`,
            dataset: { focus: `health:${r.id}`, link: r.id, latency: kind },
          },
          typeIcon(r.type),
          h("span", { class: "health-name", text: r.name || r.id }),
          h("span", { class: "health-bar", title: "SSH latency (longer is slower)" },
            h("span", { class: `health-fill fill-${kind}`, style: { width: `${width}%` } })),
          h("span", { class: `health-label text-${kind}`, text: label }),
          h("span", { class: "muted health-seen", text: r.last_seen ? `seen ${relTime(r.last_seen)}` : "never seen" }),
          r.enrolled ? badge("enrolled ✓", "ok") : badge("not enrolled", "warn"),
        ));
      }),
    ),
  );
}

/** Threshold colour of a latency: ok < 100 ms ≤ warn < 300 ms ≤ bad; offline is bad. */
export function latencyKind(status, latency) {
  if (status === "offline") return "bad";
  if (status !== "online" || latency === null) return "muted";
  if (latency < 100) return "ok";
  if (latency < 300) return "warn";
  return "bad";
}
