// The application shell: who is logged in, the top bar (Git status, theme, user menu) and the
// four tabs. Each tab lives in its own module exposing init(ctx), show() and hide(); the shell
// calls show/hide so a hidden tab stops polling and streaming work it does not need.
//
// Routing: the URL hash is "#<tab>" or "#<tab>/<thing>" (#operations/OP-10001, #links/vm-web-01).
// A tab module may export route(thing) — called on load, reload and back/forward — and
// routeArg(), what it shows now (so switching tabs keeps the thing in the URL).

import * as api from "./api.js";
import { $, $$, relTime, showError, toast } from "./dom.js";
import { bindThemeSelect } from "./theme.js";
import * as overview from "./overview.js";
import * as linksView from "./links.js";
import * as operations from "./operations.js";
import * as terminal from "./terminal.js";
import * as recordings from "./recordings.js";
import { store } from "./store.js";

const TABS = { overview, links: linksView, operations, terminal, recordings };
const GIT_POLL_MS = 30000;

// Test and debugging hook (read-only use): the live xterm.js instances per pane, the store.
window.__linkops = window.__linkops || { terminals: {}, store };

let activeTab = null;
let leaving = false;

function goToLogin() {
  if (leaving) return;
  leaving = true;
  const next = location.hash ? `?next=${encodeURIComponent(location.hash)}` : "";
  location.replace(`login.html${next}`);
}

// ---- tabs ---------------------------------------------------------------------------------

function selectTab(name, { focus = false, updateHash = true } = {}) {
  if (!TABS[name]) name = "overview";
  if (activeTab === name) return;
  const previous = activeTab;
  activeTab = name;
  for (const btn of $$(".tab")) {
    const on = btn.dataset.tab === name;
    btn.setAttribute("aria-selected", String(on));
    btn.tabIndex = on ? 0 : -1;
    if (on && focus) btn.focus();
  }
  for (const [tab] of Object.entries(TABS)) {
    document.getElementById(`panel-${tab}`).hidden = tab !== name;
  }
  if (previous) TABS[previous].hide();
  TABS[name].show();
  if (updateHash) {
    const arg = TABS[name].routeArg ? TABS[name].routeArg() : null;
    const want = hashFor(name, arg);
    if (location.hash !== want) history.replaceState(null, "", want);
  }
}

// ---- routing --------------------------------------------------------------------------------

function hashFor(tab, arg) {
  return arg ? `#${tab}/${encodeURIComponent(arg)}` : `#${tab}`;
}

/** "#operations/OP-10001" → {tab: "operations", arg: "OP-10001"}. */
export function parseHash(hash) {
  const raw = String(hash || "").replace(/^#/, "");
  const slash = raw.indexOf("/");
  const tab = slash < 0 ? raw : raw.slice(0, slash);
  let arg = null;
  if (slash >= 0) {
    try {
      arg = decodeURIComponent(raw.slice(slash + 1)) || null;
    } catch {
      arg = null;
    }
  }
  return { tab: TABS[tab] ? tab : "overview", arg };
}

/** Show what the URL names (on load and on every back/forward). */
function applyRoute() {
  const { tab, arg } = parseHash(location.hash);
  selectTab(tab, { updateHash: false });
  if (TABS[tab].route) TABS[tab].route(arg);
}

/**
 * A tab opened something: put it in the URL. A new history entry (so Back returns to what
 * was shown before) unless `replace`; no hashchange is fired, the tab already shows it.
 */
function setRoute(tab, arg, { replace = false } = {}) {
  const want = hashFor(tab, arg);
  if (location.hash === want) return;
  if (replace) history.replaceState(null, "", want);
  else history.pushState(null, "", want);
}

function bindTabs() {
  const buttons = $$(".tab");
  buttons.forEach((btn, i) => {
    btn.addEventListener("click", () => selectTab(btn.dataset.tab));
    // WAI-ARIA tabs pattern: arrows move between tabs, Home/End jump.
    btn.addEventListener("keydown", (ev) => {
      let j = null;
      if (ev.key === "ArrowRight") j = (i + 1) % buttons.length;
      else if (ev.key === "ArrowLeft") j = (i - 1 + buttons.length) % buttons.length;
      else if (ev.key === "Home") j = 0;
      else if (ev.key === "End") j = buttons.length - 1;
      if (j !== null) {
        ev.preventDefault();
        selectTab(buttons[j].dataset.tab, { focus: true });
      }
    });
  });
  window.addEventListener("hashchange", applyRoute);
}

// Polling tabs stop while the browser tab is hidden and resume when it is visible again.
document.addEventListener("visibilitychange", () => {
  if (!activeTab) return;
  if (document.hidden) TABS[activeTab].hide();
  else TABS[activeTab].show();
});

// ---- Git status ---------------------------------------------------------------------------

let gitTimer = null;

function renderGit(status) {
  const dot = $("#git-dot");
  const text = $("#git-text");
  const errBox = $("#git-error");
  const st = String(status.status || "unknown").toLowerCase();
  const ok = !status.error && st !== "failed" && st !== "error";
  dot.className = `dot ${ok ? (status.last_sync ? "dot-ok" : "dot-muted") : "dot-bad"}`;
  const hash = status.commit_hash ? String(status.commit_hash).slice(0, 8) : "no commit";
  const when = status.last_sync ? relTime(status.last_sync) : "never synced";
  text.textContent = `${hash} · ${when}`;
  text.title = [status.repository, status.branch, status.status, status.last_sync]
    .filter(Boolean).join(" · ");
  if (status.error) {
    errBox.hidden = false;
    errBox.textContent = `Git sync failed: ${status.error}`;
  } else {
    errBox.hidden = true;
    errBox.textContent = "";
  }
}

async function refreshGit() {
  try {
    renderGit((await api.gitStatus()) || {});
  } catch (err) {
    if (err.status === 404) {
      $("#git-text").textContent = "Git status unavailable";
      return;
    }
    $("#git-dot").className = "dot dot-bad";
    $("#git-text").textContent = "Git status unavailable";
    if (err.status !== 401) showError(err, "Git status");
  }
}

function bindGit() {
  const btn = $("#git-sync");
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    btn.textContent = "Syncing…";
    try {
      const r = (await api.gitSync()) || {};
      if (r.success === false) {
        toast("Git sync failed", "error", r.error || "");
      } else {
        const changes = r.changes ? ` (${describeChanges(r.changes)})` : "";
        toast(`Synced ${r.commit_hash ? String(r.commit_hash).slice(0, 8) : ""}${changes}`, "ok");
        store.invalidate();
      }
    } catch (err) {
      showError(err, "Git sync");
    } finally {
      btn.disabled = false;
      btn.textContent = "Sync";
      refreshGit();
    }
  });
  refreshGit();
  gitTimer = setInterval(() => {
    if (!document.hidden) refreshGit();
  }, GIT_POLL_MS);
}

// changes = {links: {added: [...], removed: [...], updated: [...]}, scripts: {...}}
// → "links +1 −0 ~2, scripts no change"
function describeChanges(changes) {
  if (!changes || typeof changes !== "object") return String(changes);
  const count = (v) => (Array.isArray(v) ? v.length : Number(v) || 0);
  return Object.entries(changes)
    .map(([kind, c]) => {
      if (!c || typeof c !== "object" || Array.isArray(c)) return `${kind}: ${count(c)}`;
      const [added, removed, updated] = [count(c.added), count(c.removed), count(c.updated)];
      if (added + removed + updated === 0) return `${kind} no change`;
      return `${kind} +${added} −${removed} ~${updated}`;
    })
    .join(", ");
}

// ---- user menu ----------------------------------------------------------------------------

function bindUserMenu(user) {
  $("#user-name").textContent = user.username || "?";
  $(".user-avatar").textContent = (user.username || "?").slice(0, 1).toUpperCase();
  $("#user-role").textContent = `Signed in as ${user.username} (${user.role || "user"})`;
  const btn = $("#user-button");
  const menu = $("#user-dropdown");
  const setOpen = (open) => {
    menu.hidden = !open;
    btn.setAttribute("aria-expanded", String(open));
    if (open) $("#logout").focus();
  };
  btn.addEventListener("click", () => setOpen(menu.hidden));
  menu.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      setOpen(false);
      btn.focus();
    }
  });
  document.addEventListener("click", (ev) => {
    if (!menu.hidden && !ev.target.closest(".user-menu")) setOpen(false);
  });
  $("#logout").addEventListener("click", async () => {
    try {
      await terminal.teardown();
      await api.logout();
    } catch (err) {
      if (err.status !== 401) showError(err, "Log out");
    }
    leaving = true;
    location.replace("login.html");
  });
}

// ---- boot ---------------------------------------------------------------------------------

async function boot() {
  api.onUnauthorized(goToLogin);
  bindThemeSelect($("#theme-select"));
  let user;
  try {
    user = await api.me();
  } catch (err) {
    if (err.status !== 401) {
      showError(err, "Loading your session");
      goToLogin();
    }
    return;
  }
  window.__linkops.user = user;
  bindUserMenu(user);
  bindGit();
  const ctx = {
    selectTab,
    setRoute,
    /** Go to a tab and the thing in it, as a link would (a new history entry). */
    navigate: (tab, arg = null) => {
      const want = hashFor(tab, arg);
      if (location.hash === want) applyRoute();
      else location.hash = want; // → hashchange → applyRoute
    },
    openTerminal: (linkId) => {
      selectTab("terminal");
      terminal.openInPane("A", linkId);
    },
    viewOperation: (id) => {
      selectTab("operations");
      operations.openOperation(id);
    },
    /** The Links table filtered to one type (Overview → Infrastructure). */
    showLinksOfType: (type) => {
      linksView.filterByType(type);
      if (location.hash !== "#links") history.pushState(null, "", "#links");
      selectTab("links", { updateHash: false });
    },
    /** The run form with these targets ticked (Links → Run). */
    runOn: (targets) => {
      selectTab("operations");
      operations.runOn(targets);
    },
  };
  for (const mod of Object.values(TABS)) mod.init(ctx);
  bindTabs();
  applyRoute();
  document.body.dataset.ready = "true";
}

window.addEventListener("unhandledrejection", (ev) => {
  // Nothing fails silently: a promise nobody awaited still reaches the user.
  showError(ev.reason, "Unexpected error");
  ev.preventDefault();
});

window.addEventListener("error", (ev) => {
  // A bug in an event handler still tells the user something went wrong.
  showError(ev.error || new Error(ev.message), "Unexpected error");
});

window.addEventListener("beforeunload", () => clearInterval(gitTimer));

boot();
