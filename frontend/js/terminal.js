// Terminal tab: one workspace (1–4 panes A–D), each pane an xterm.js terminal bound to one
// enrolled link. All panes share ONE WebSocket carrying JSON {pane, type, data}:
//   client → server: {pane, type:"stdin", data} and {pane, type:"resize", cols, rows}
//   server → client: {pane, type:"stdout", data, replay?} and {pane, type:"status", data,
//                    message, target?, cols?, rows?}
// The workspace id lives in sessionStorage so a page reload re-attaches to the same sessions.
//
// Replay never types (docs/decisions/terminal.md): output replayed from the scrollback is
// written with xterm.js's write callback counting it in `pane.replaying`; while that is
// non-zero, the terminal's own answers to queries found in the old output (device attributes,
// mode and colour reports, all starting with ESC or a C1 control) are dropped instead of being
// sent to the shell. The server also takes the queries out of what it replays. The replay is
// drawn at the size it was recorded at (the status before it says cols × rows), then the pane
// is fitted again, so xterm.js reflows the old lines instead of mis-wrapping them.
//
// xterm.js is imported lazily: if the vendored files are missing, only this tab reports it and
// the rest of the app keeps working.

import * as api from "./api.js";
import { $, $$, badge, h, showError, toast } from "./dom.js";
import { store } from "./store.js";
import { createTerminal, loadXterm, xtermLoaded } from "./xtermview.js";

export const LAYOUTS = { single: 1, grid2x1: 2, grid1x3: 3, grid2x2: 4 };
const PANES = ["A", "B", "C", "D"];
const WS_KEY = "linkops.workspace";
const LAYOUT_KEY = "linkops.layout";
// Pane targets and layout outlive a logout (which closes the workspace and its shells), so
// after logging in again the panes offer the same hosts: {user, layout, targets: {A: id}}.
const REMEMBER_KEY = "linkops.terminal.remembered";

let layout = sessionStorage.getItem(LAYOUT_KEY) || "single";
let maximised = null; // the pane shown alone by its maximise button, or null
let workspaceId = sessionStorage.getItem(WS_KEY);
let socket = null;
let socketReady = null; // Promise resolved when the socket is open
let closingOnPurpose = false;
let retryDelay = 1000;
let initialised = false;
let enrolledLinks = [];
const panes = {}; // A..D -> {el, body, select, statusEl, status, target, term, view, replaying}

// Answers xterm.js types by itself (DA, DSR/CPR, DECRQM, OSC colour reports, DCS reports)
// begin with ESC or a C1 control. Typed text does not (an arrow key does, but dropping one
// during the milliseconds a replay takes to parse is harmless).
const TERMINAL_REPLY = /^[\x1b\x90\x9b\x9d]/;

if (!LAYOUTS[layout]) layout = "single";

export function init() {
  for (const btn of $$("#term-layouts .seg")) {
    btn.addEventListener("click", () => setLayout(btn.dataset.layout));
  }
  $("#term-connect-all").addEventListener("click", connectAllPanes);
  $("#term-disconnect-all").addEventListener("click", disconnectAllPanes);
  $("#term-broadcast").addEventListener("click", toggleBroadcast);
  for (const p of PANES) panes[p] = buildPane(p);
  $("#term-grid").append(...PANES.map((p) => panes[p].el));
  // Moving between panes from the keyboard also works from a pane's header (the terminals
  // catch the same keys themselves, since xterm.js stops their propagation).
  $("#term-grid").addEventListener("keydown", (ev) => {
    if (!ev.target.closest || ev.target.closest(".xterm")) return; // the terminal's own handler did it
    const p = ev.target.closest(".pane")?.dataset.pane;
    if (p && paneShortcut(p, ev)) ev.preventDefault();
  });
  if (!workspaceId) restoreRemembered();
  store.subscribe((list) => {
    enrolledLinks = list.filter((l) => l.enrolled);
    fillPickers();
  });
  applyLayout();
  initialised = true;
  // Re-attach straight away after a reload, even before the tab is opened again.
  if (workspaceId) reattach();
}

export async function show() {
  try {
    await loadXterm();
  } catch (err) {
    showError(err, "Loading the terminal emulator (run python frontend/build.py)");
    return;
  }
  try {
    enrolledLinks = (await store.links()).filter((l) => l.enrolled);
    fillPickers();
  } catch (err) {
    showError(err, "Loading links");
  }
  for (const p of visiblePanes()) ensureTerm(p);
  requestAnimationFrame(fitAll);
}

export function hide() {
  // Sessions keep running while another tab is shown; nothing to pause.
}

// ---- panes --------------------------------------------------------------------------------

function buildPane(p) {
  const select = h("select", {
    class: "pane-target", "aria-label": `Target of pane ${p}`, dataset: { pane: p },
    title: "Pick a host (from the keyboard: arrows, then Enter to connect)",
  });
  // Picking with the mouse connects at once. From the keyboard, Chromium fires "change" on
  // every arrow key of a closed menu: stepping through the hosts must not open (and ask to
  // replace) a session per step, so there Enter connects.
  let steppedByKey = false;
  select.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      panes[p].remembered = "";
      assignAndConnect(p, select.value);
    } else {
      steppedByKey = !ev.altKey && (ev.key.startsWith("Arrow") || (ev.key.length === 1 && ev.key !== " ")
        || ev.key === "Home" || ev.key === "End" || ev.key === "PageUp" || ev.key === "PageDown");
    }
  });
  select.addEventListener("change", () => {
    panes[p].remembered = "";
    if (steppedByKey) {
      steppedByKey = false;
      return;
    }
    assignAndConnect(p, select.value);
  });
  select.addEventListener("blur", () => { steppedByKey = false; });
  const statusEl = h("span", { class: "pane-status" });
  const connectBtn = h("button", { class: "btn btn-small", type: "button", text: "Connect", dataset: { paneAction: "connect" } });
  connectBtn.addEventListener("click", () => assignAndConnect(p, select.value));
  const disconnectBtn = h("button", { class: "btn btn-small btn-ghost", type: "button", text: "Disconnect", dataset: { paneAction: "disconnect" } });
  disconnectBtn.addEventListener("click", () => disconnect(p));
  const maxBtn = h("button", {
    class: "btn btn-small btn-ghost pane-icon", type: "button", text: "⤢", title: `Maximise pane ${p}`,
    "aria-label": `Maximise pane ${p}`, "aria-pressed": "false", dataset: { paneAction: "maximise" },
  });
  maxBtn.addEventListener("click", () => toggleMaximise(p));
  const closeBtn = h("button", {
    class: "btn btn-small btn-ghost pane-icon", type: "button", text: "✕",
    title: `Close pane ${p}: end its session and clear it`, "aria-label": `Close pane ${p}`,
    dataset: { paneAction: "close" },
  });
  closeBtn.addEventListener("click", () => closePane(p));
  // The hint is page text over the terminal, not terminal output: it never ends up in the
  // scrollback and goes away with the first session.
  const hint = h("p", { class: "pane-hint", text: `Pane ${p}: pick an enrolled link above to connect.` });
  const body = h("div", { class: "pane-body" });
  const el = h(
    "section",
    { class: "pane", dataset: { pane: p }, "aria-label": `Terminal pane ${p}` },
    h("header", { class: "pane-head" },
      h("span", { class: "pane-letter", text: p }), select, statusEl,
      h("span", { class: "spacer" }), connectBtn, disconnectBtn, maxBtn, closeBtn),
    h("div", { class: "pane-main" }, body, hint),
  );
  const pane = {
    el, body, select, statusEl, connectBtn, disconnectBtn, maxBtn, hint, target: "", status: "idle",
    term: null, view: null, remembered: "",
    replaying: 0, // replay chunks written but not yet parsed by xterm.js
    recorded: null, // {cols, rows} the next replay was recorded at
  };
  setPaneStatus(pane, "idle");
  return pane;
}

// ---- broadcast input (issue #18) ----------------------------------------------------------
// With the toolbar's Broadcast toggle on, what is typed into any receiving pane goes to every
// live visible pane in one {type: "broadcast", panes, data} message; each receiving pane is
// outlined and labelled BROADCAST so nobody types into production by surprise.

let broadcasting = false;

function broadcastPanes() {
  return visiblePanes().filter((p) => ["connected", "enrolled"].includes(panes[p].status));
}

function toggleBroadcast() {
  broadcasting = !broadcasting;
  $("#term-broadcast").setAttribute("aria-pressed", String(broadcasting));
  markBroadcast();
}

function markBroadcast() {
  const receiving = broadcasting ? broadcastPanes() : [];
  for (const p of PANES) {
    if (!panes[p]) continue;
    if (receiving.includes(p)) panes[p].el.dataset.broadcast = "true";
    else delete panes[p].el.dataset.broadcast;
  }
}

function sendInput(p, data) {
  const receiving = broadcasting ? broadcastPanes() : [];
  if (receiving.length > 1 && receiving.includes(p)) send({ type: "broadcast", panes: receiving, data });
  else send({ pane: p, type: "stdin", data });
}

function visiblePanes() {
  return PANES.slice(0, LAYOUTS[layout]);
}

function fillPickers() {
  for (const p of PANES) {
    const pane = panes[p];
    // A host remembered from the last login is offered only while it is still enrolled.
    const remembered = enrolledLinks.some((l) => l.id === pane.remembered) ? pane.remembered : "";
    const keep = pane.target || pane.select.value || remembered;
    const wanted = enrolledLinks.map((l) => [l.id, `${l.name} (${l.type})`]);
    // A target the server still has on the pane stays listed even if the cache lags.
    if (keep && !enrolledLinks.some((l) => l.id === keep)) wanted.push([keep, keep]);
    // Rebuild only when the list really changed: replacing the options under an open
    // picker would close it in the user's hands (the links refresh often).
    const key = JSON.stringify(wanted);
    if (pane.optionsKey !== key) {
      pane.optionsKey = key;
      pane.select.replaceChildren(h("option", { value: "", text: "— pick an enrolled link —" }),
        ...wanted.map(([value, text]) => h("option", { value, text })));
    }
    pane.select.value = keep || "";
  }
}

function ensureTerm(p) {
  const pane = panes[p];
  if (pane.term || !xtermLoaded()) return pane.term;
  const view = createTerminal(pane.body, {
    onData: (data) => {
      if (pane.replaying > 0 && TERMINAL_REPLY.test(data)) return; // answers to old output
      sendInput(p, data);
    },
    // The replay is drawn at its recorded size; the PTY keeps the pane's real size meanwhile.
    onResize: (cols, rows) => {
      if (pane.replaying === 0) send({ pane: p, type: "resize", cols, rows });
    },
    canFit: () => pane.replaying === 0,
    onShortcut: (ev) => paneShortcut(p, ev),
  });
  pane.term = view.term;
  pane.view = view;
  window.__linkops.terminals[p] = view.term;
  return view.term;
}

function fitPane(p) {
  if (panes[p].view) panes[p].view.fit();
}

function fitAll() {
  for (const p of visiblePanes()) fitPane(p);
}

function setPaneStatus(pane, status, message = "") {
  const wasLive = ["connected", "enrolled"].includes(pane.status);
  pane.status = status;
  // The server says "enrolled" once the client ID on the host matched, then "connected":
  // keep showing the enrollment next to the connection state.
  if (status === "enrolled") pane.enrolled = true;
  else if (status !== "connected") pane.enrolled = false;
  const kind = { connected: "ok", enrolled: "ok", connecting: "warn", error: "bad", closed: "muted", idle: "muted" }[status] || "muted";
  const label = status === "enrolled" ? "enrolled ✓" : status === "idle" ? "not connected" : status;
  const badges = [badge(label, kind, message)];
  if (status === "connected" && (pane.enrolled || enrolledLinks.some((l) => l.id === pane.target))) {
    badges.push(badge("enrolled ✓", "ok", "client ID verified on connect"));
  }
  pane.statusEl.replaceChildren(...badges);
  pane.hint.hidden = status !== "idle";
  pane.wasLive = wasLive;
  pane.el.dataset.status = status;
  const live = status === "connected" || status === "enrolled" || status === "connecting";
  pane.disconnectBtn.disabled = !live;
  if (status !== "connected" && status !== "enrolled") delete pane.el.dataset.recording;
  updateSummary();
  markBroadcast();
}

function updateSummary() {
  const vis = visiblePanes();
  const n = vis.filter((p) => panes[p] && ["connected", "enrolled"].includes(panes[p].status)).length;
  $("#term-summary").textContent = `${n}/${vis.length} connected`;
}

async function setLayout(next, { remote = true } = {}) {
  if (!LAYOUTS[next] || next === layout) return;
  if (remote && workspaceId) {
    try {
      await api.setWorkspaceLayout(workspaceId, next);
    } catch (err) {
      showError(err, "Changing the layout");
      return;
    }
  }
  layout = next;
  maximised = null;
  sessionStorage.setItem(LAYOUT_KEY, layout);
  remember();
  applyLayout();
  if (xtermLoaded()) for (const p of visiblePanes()) ensureTerm(p);
  requestAnimationFrame(fitAll);
}

function applyLayout() {
  const grid = $("#term-grid");
  grid.dataset.layout = layout;
  for (const btn of $$("#term-layouts .seg")) btn.setAttribute("aria-pressed", String(btn.dataset.layout === layout));
  const vis = new Set(visiblePanes());
  if (maximised && !vis.has(maximised)) maximised = null;
  if (maximised) grid.dataset.maximised = maximised;
  else delete grid.dataset.maximised;
  for (const p of PANES) {
    panes[p].el.hidden = !vis.has(p) || (maximised !== null && maximised !== p);
    panes[p].maxBtn.setAttribute("aria-pressed", String(maximised === p));
    panes[p].maxBtn.title = maximised === p ? `Restore the layout` : `Maximise pane ${p}`;
    // One pane shown anyway: maximising would change nothing.
    panes[p].maxBtn.disabled = vis.size === 1;
  }
  updateSummary();
  markBroadcast();
}

function toggleMaximise(p) {
  maximised = maximised === p ? null : p;
  applyLayout();
  requestAnimationFrame(fitAll);
  if (panes[p].term) panes[p].term.focus();
  else panes[p].maxBtn.focus();
}

/** Keyboard between panes: Ctrl+Shift+←/→ previous / next shown pane, Ctrl+Shift+↑ the pane's
 * target menu (the way out of a terminal, which keeps Tab for the shell). True if handled. */
function paneShortcut(p, ev) {
  if (ev.type !== "keydown" || !ev.ctrlKey || !ev.shiftKey || ev.altKey || ev.metaKey) return false;
  const shown = visiblePanes().filter((q) => !panes[q].el.hidden);
  const i = shown.indexOf(p);
  if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
    if (i < 0 || shown.length < 2) return true;
    const next = shown[(i + (ev.key === "ArrowRight" ? 1 : shown.length - 1)) % shown.length];
    focusPane(next);
    return true;
  }
  if (ev.key === "ArrowUp") {
    panes[p].select.focus();
    return true;
  }
  return false;
}

function focusPane(p) {
  const pane = panes[p];
  if (pane.term) pane.term.focus();
  else pane.select.focus();
}

// ---- workspace and socket -----------------------------------------------------------------

async function ensureWorkspace() {
  if (workspaceId) return workspaceId;
  workspaceId = await api.createWorkspace(layout);
  sessionStorage.setItem(WS_KEY, workspaceId);
  return workspaceId;
}

function send(msg) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg));
}

// Flow control (docs/api.md): the server keeps at most FLOW_WINDOW characters of output in
// flight and waits for acks, which we send once xterm.js has actually rendered the text. A
// pane flooding output then cannot fill the socket buffers a quiet pane's echo would queue
// behind. Acks are batched so they cost one small frame per ACK_BATCH characters.
const FLOW_WINDOW = 65536;
const ACK_BATCH = 16384;
let unacked = 0;
let ackTimer = null;

function ack(chars, ws) {
  if (ws !== socket) return; // written for a socket that is gone: its window went with it
  unacked += chars;
  if (unacked >= ACK_BATCH) {
    flushAck();
  } else if (ackTimer === null) {
    ackTimer = setTimeout(flushAck, 20);
  }
}

function flushAck() {
  clearTimeout(ackTimer);
  ackTimer = null;
  if (unacked > 0) send({ type: "ack", chars: unacked });
  unacked = 0;
}

function ensureSocket() {
  if (socket && (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING)) {
    return socketReady;
  }
  closingOnPurpose = false;
  // The server replays each pane's scrollback to a newly attached socket: start from a clean
  // screen so a reconnect does not show everything twice.
  for (const p of PANES) if (panes[p].term) panes[p].term.reset();
  for (const p of PANES) panes[p].replacing = false; // the new socket tells the state anew
  const ws = new WebSocket(api.workspaceSocketUrl(workspaceId));
  socket = ws;
  socketReady = new Promise((resolve, reject) => {
    ws.addEventListener("open", () => {
      retryDelay = 1000;
      unacked = 0;
      send({ type: "flow", window: FLOW_WINDOW });
      resolve();
      startPing(ws);
      // Tell the server every pane's size so PTYs match what the user sees.
      for (const p of visiblePanes()) {
        const t = panes[p].term;
        if (t) send({ pane: p, type: "resize", cols: t.cols, rows: t.rows });
      }
    }, { once: true });
    ws.addEventListener("error", () => reject(new Error("The terminal connection failed.")), { once: true });
  });
  socketReady.catch(() => {}); // a failed open is reported by the close handler
  ws.addEventListener("message", (ev) => onMessage(ev.data, ws));
  ws.addEventListener("close", (ev) => onSocketClose(ws, ev));
  return socketReady;
}

function onMessage(raw, ws) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    return;
  }
  const pane = panes[msg.pane];
  if (!pane && msg.type === "status" && msg.data === "error") {
    toast(`Terminal: ${msg.message || "error"}`, "error", msg.code || "");
    return;
  }
  if (!pane) return;
  if (pane.replacing) {
    // The old session never says these again: whatever does is the new one (or, after a
    // socket reconnect, the state the server has now).
    if (msg.type === "status" && ["connecting", "enrolled", "connected"].includes(msg.data)) pane.replacing = false;
    else if (msg.type === "stdout") return ack(String(msg.data || "").length, ws);
    else if (msg.type === "status" && ["closed", "error"].includes(msg.data)) return;
  }
  if (msg.type === "stdout") {
    const term = ensureTerm(msg.pane);
    const text = typeof msg.data === "string" ? msg.data : "";
    if (!term) ack(text.length, ws);
    else if (msg.replay) writeReplay(msg.pane, text, ws);
    else {
      pane.recorded = null;
      term.write(text, () => ack(text.length, ws));
    }
  } else if (msg.type === "status") {
    let st = String(msg.data || msg.status || "");
    // The server reports a pane that never had a session as "closed"; it is simply unused.
    if (st === "closed" && pane.status === "idle") st = "idle";
    setPaneStatus(pane, st, msg.message || "");
    if (st === "connected") pane.el.dataset.recording = msg.recording ? "true" : "false";
    const cols = Number(msg.cols);
    const rows = Number(msg.rows);
    pane.recorded = cols > 0 && rows > 0 ? { cols, rows } : null;
    if (msg.target) {
      pane.target = msg.target;
      pane.select.value = msg.target;
    }
    if (st === "connected" || st === "enrolled") {
      const t = pane.term;
      if (t) send({ pane: msg.pane, type: "resize", cols: t.cols, rows: t.rows });
    }
    if (st === "error") {
      toast(`Pane ${msg.pane}: ${msg.message || "connection error"}`, "error");
      if (pane.term) pane.term.write(`\r\n\x1b[31m[${msg.message || "error"}]\x1b[0m\r\n`);
    }
    if (st === "closed" && pane.wasLive && pane.term) {
      pane.term.write("\r\n\x1b[90m[session closed]\x1b[0m\r\n");
    }
  }
}

/** Scrollback for a (re-)attached socket: see "Replay never types" at the top. */
function writeReplay(p, text, ws) {
  const pane = panes[p];
  const term = pane.term;
  if (pane.replaying === 0 && pane.recorded) {
    const { cols, rows } = pane.recorded;
    pane.recorded = null;
    pane.replaying += 1; // before resize(): onResize must not tell the PTY
    if (term.cols !== cols || term.rows !== rows) term.resize(cols, rows);
    pane.replaying -= 1;
  }
  pane.replaying += 1;
  term.write(text, () => {
    pane.replaying -= 1;
    ack(text.length, ws);
    if (pane.replaying === 0) {
      // Back to the pane's own size (xterm.js reflows the replayed lines) and make sure the
      // PTY has it too (the server ignores a repeated size).
      fitPane(p);
      send({ pane: p, type: "resize", cols: term.cols, rows: term.rows });
    }
  });
}

// Keeps the socket from being closed as idle ([terminal] websocket_timeout) while the user
// only reads.
const PING_MS = 25000;
let pingTimer = null;
function startPing(ws) {
  clearInterval(pingTimer);
  pingTimer = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
    else clearInterval(pingTimer);
  }, PING_MS);
}

const CLOSE_REPLACED = 4001;
const CLOSE_WORKSPACE_GONE = 4004;

async function onSocketClose(ws, ev) {
  if (ws !== socket) return;
  socket = null;
  clearInterval(pingTimer);
  if (closingOnPurpose || !workspaceId) return;
  if (ev.code === CLOSE_REPLACED) {
    // Another tab attached to this workspace; fighting over it would loop forever.
    for (const p of PANES) setPaneStatus(panes[p], "closed", "attached elsewhere");
    toast("This terminal workspace was opened in another window", "error",
      "Reload this page to take it back.");
    return;
  }
  if (ev.code === CLOSE_WORKSPACE_GONE) {
    forgetWorkspace();
    toast("The terminal workspace was closed", "error", ev.reason || "");
    return;
  }
  for (const p of PANES) {
    if (["connected", "enrolled", "connecting"].includes(panes[p].status)) setPaneStatus(panes[p], "closed", "socket closed");
  }
  // Is the workspace still there? (401 goes to login; 404 means it is gone for good.)
  try {
    await api.getWorkspace(workspaceId);
  } catch (err) {
    if (err.status === 404) {
      forgetWorkspace();
      toast("The terminal workspace was closed by the server", "error");
    } else if (err.status !== 401) {
      showError(err, "Terminal connection lost");
    }
    return;
  }
  toast("Terminal connection lost; reconnecting…", "error", ev.reason || `code ${ev.code}`);
  setTimeout(() => {
    if (workspaceId && !socket) reattach();
  }, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 30000);
}

function forgetWorkspace() {
  workspaceId = null;
  sessionStorage.removeItem(WS_KEY);
  for (const p of PANES) {
    panes[p].target = "";
    setPaneStatus(panes[p], "idle");
  }
}

/** After a reload: read the workspace back, restore layout and targets, reopen the socket. */
async function reattach() {
  try {
    await loadXterm();
    for (const p of visiblePanes()) ensureTerm(p);
  } catch {
    // Reported when the tab is opened; the socket can still re-attach.
  }
  let ws;
  try {
    ws = await api.getWorkspace(workspaceId);
  } catch (err) {
    if (err.status === 404) forgetWorkspace();
    else showError(err, "Re-attaching the terminal workspace");
    return;
  }
  const info = (ws && ws.workspace) || ws || {};
  if (info.layout && LAYOUTS[info.layout]) await setLayout(info.layout, { remote: false });
  for (const entry of info.panes || []) {
    const pane = panes[entry.pane];
    if (!pane) continue;
    pane.target = entry.target || "";
    if (entry.status) setPaneStatus(pane, String(entry.status));
  }
  fillPickers();
  try {
    await ensureSocket();
  } catch (err) {
    showError(err, "Re-attaching the terminal workspace");
  }
}

// ---- actions ------------------------------------------------------------------------------

const isLive = (pane) => ["connected", "enrolled", "connecting"].includes(pane.status);

/** Ask before a live session is closed to make room for another host. */
function mayReplace(p, target) {
  const pane = panes[p];
  if (!isLive(pane) || !pane.target || pane.target === target) return true;
  return window.confirm(`Pane ${p} is connected to ${pane.target}.\n\n`
    + `Close that session and connect pane ${p} to ${target}?`);
}

async function assignAndConnect(p, target, { confirmed = false } = {}) {
  const pane = panes[p];
  if (!target) {
    toast(`Pane ${p}: pick a target first`, "error");
    return;
  }
  const live = isLive(pane);
  if (live && pane.target === target) return; // already there
  if (!confirmed && !mayReplace(p, target)) {
    pane.select.value = pane.target; // the menu shows what the pane is really connected to
    return;
  }
  // Show the change at once: until the new session is up this pane is not usable.
  setPaneStatus(pane, "connecting");
  try {
    await ensureWorkspace();
    await ensureSocket();
    if (live && pane.target) {
      // The old session's last words ("closed", trailing output) must not land on the new
      // screen: ignored until the server announces the new session ("connecting").
      pane.replacing = true;
      await api.disconnectPane(workspaceId, p);
    }
    await api.assignPanes(workspaceId, [{ pane: p, target }]);
    pane.target = target;
    remember();
    // A new session starts on a clean screen: the new host's prompt never follows the old
    // host's output (and the hint goes away).
    if (xtermLoaded()) ensureTerm(p);
    if (pane.term) pane.term.reset();
    setPaneStatus(pane, "connecting");
    await api.connectPane(workspaceId, p);
  } catch (err) {
    pane.replacing = false;
    setPaneStatus(pane, "error", err.message);
    showError(err, `Pane ${p}`);
  }
}

async function connectAllPanes() {
  const assignments = visiblePanes()
    .filter((p) => panes[p].select.value)
    .map((p) => ({ pane: p, target: panes[p].select.value }));
  if (!assignments.length) {
    toast("Pick a target for at least one pane", "error");
    return;
  }
  try {
    await ensureWorkspace();
    await ensureSocket();
    await api.assignPanes(workspaceId, assignments);
    for (const a of assignments) {
      panes[a.pane].target = a.target;
      remember();
      if (xtermLoaded()) ensureTerm(a.pane);
      if (!isLive(panes[a.pane])) {
        if (panes[a.pane].term) panes[a.pane].term.reset(); // a new session: a clean screen
        setPaneStatus(panes[a.pane], "connecting");
      }
    }
    await api.connectAll(workspaceId);
  } catch (err) {
    showError(err, "Connect all");
  }
}

async function disconnect(p) {
  if (!workspaceId) return;
  try {
    await api.disconnectPane(workspaceId, p);
    setPaneStatus(panes[p], "closed");
  } catch (err) {
    showError(err, `Disconnect pane ${p}`);
  }
}

async function disconnectAllPanes() {
  for (const p of PANES) {
    if (["connected", "enrolled", "connecting"].includes(panes[p].status)) await disconnect(p);
  }
}

/** The pane's close button: end its session (if any), clear its screen and its target. */
async function closePane(p) {
  const pane = panes[p];
  try {
    if (workspaceId) {
      if (isLive(pane)) {
        pane.replacing = true; // its "closed" would only say what the user just did
        await api.disconnectPane(workspaceId, p);
      }
      if (pane.target) await api.assignPanes(workspaceId, [{ pane: p, target: null }]);
    }
  } catch (err) {
    pane.replacing = false;
    showError(err, `Close pane ${p}`);
    return;
  }
  pane.target = "";
  pane.remembered = "";
  pane.select.value = "";
  if (pane.term) pane.term.reset();
  setPaneStatus(pane, "idle");
  remember();
  if (maximised === p) toggleMaximise(p);
  pane.select.focus();
}

const currentUser = () => (window.__linkops && window.__linkops.user && window.__linkops.user.username) || "";

/** Keep the layout and pane targets for the next login of the same user (see REMEMBER_KEY). */
function remember() {
  const user = currentUser();
  if (!user || !initialised) return;
  const targets = {};
  for (const p of PANES) if (panes[p].target || panes[p].remembered) targets[p] = panes[p].target || panes[p].remembered;
  try {
    localStorage.setItem(REMEMBER_KEY, JSON.stringify({ user, layout, targets }));
  } catch {
    // Storage full or disabled: the panes simply start empty next time.
  }
}

function restoreRemembered() {
  let saved;
  try {
    saved = JSON.parse(localStorage.getItem(REMEMBER_KEY) || "null");
  } catch {
    saved = null;
  }
  if (!saved || saved.user !== currentUser() || typeof saved.targets !== "object") return;
  if (LAYOUTS[saved.layout]) layout = saved.layout;
  for (const p of PANES) {
    const t = saved.targets && saved.targets[p];
    if (typeof t === "string") panes[p].remembered = t;
  }
}

/** The pane a new session for `linkId` should use: `preferred` if it is free, else the first
 * free shown pane, else a free hidden one (the layout grows to show it); null if all are live. */
async function paneFor(preferred, linkId) {
  const free = (p) => !isLive(panes[p]);
  if (free(preferred) && visiblePanes().includes(preferred)) return preferred;
  const shown = visiblePanes().find(free);
  if (shown) return shown;
  const hidden = PANES.find(free);
  if (!hidden) return null;
  const needed = PANES.indexOf(hidden) + 1;
  const next = Object.keys(LAYOUTS).find((l) => LAYOUTS[l] >= needed);
  await setLayout(next);
  return visiblePanes().includes(hidden) ? hidden : null;
}

/**
 * Open `linkId` in a terminal pane (the Links tab's "Terminal" action). A live session is
 * never replaced silently: a pane already on that host is focused, otherwise `preferred` or
 * another free pane is used, and only when all panes are live the user is asked whether
 * `preferred`'s session may go.
 */
export async function openInPane(preferred, linkId) {
  await show();
  const already = visiblePanes().find((p) => panes[p].target === linkId && isLive(panes[p]));
  if (already) {
    toast(`Pane ${already} is already connected to ${linkId}`, "ok");
    if (panes[already].term) panes[already].term.focus();
    return;
  }
  let p = await paneFor(preferred, linkId);
  if (!p) {
    if (!mayReplace(preferred, linkId)) return;
    p = preferred;
  }
  const pane = panes[p];
  if (![...pane.select.options].some((o) => o.value === linkId)) {
    pane.select.append(h("option", { value: linkId, text: linkId }));
  }
  pane.select.value = linkId;
  await assignAndConnect(p, linkId, { confirmed: true });
  if (pane.term) pane.term.focus();
}

/** Logout: close the socket and the workspace (and with it the SSH sessions). */
export async function teardown() {
  if (!initialised || !workspaceId) return;
  closingOnPurpose = true;
  if (socket) socket.close(1000, "logout");
  try {
    await api.deleteWorkspace(workspaceId);
  } catch {
    // The server drops the sessions when the token is revoked anyway.
  }
  forgetWorkspace();
}
