// Recordings tab (issue #18, SPEC §10.4): every recorded terminal session, filters (link,
// user, date), a full-text search over what the screens showed, and asciinema-player opening a
// recording at the moment of a search hit.
//
//   GET /api/terminal/recordings?target=&user=&from=&to=&cursor=  → {recordings, next_cursor}
//   GET /api/terminal/recordings/search?q=                         → {hits: [...]}
//   GET /api/terminal/recordings/{id}                              → the .cast file
//
// The player (vendor/asciinema-player, a classic script defining window.AsciinemaPlayer) is
// loaded on first use, so the rest of the app never pays for it.

import * as api from "./api.js";
import { $, fmtDuration, fmtTime, h, showError } from "./dom.js";

const PLAYER_JS = "vendor/asciinema-player/asciinema-player.min.js";
const PLAYER_CSS = "vendor/asciinema-player/asciinema-player.css";

let playerLoading = null;
let player = null;
let nextCursor = null;

const enc = encodeURIComponent;

function loadPlayer() {
  if (window.AsciinemaPlayer) return Promise.resolve(window.AsciinemaPlayer);
  if (!playerLoading) {
    playerLoading = new Promise((resolve, reject) => {
      const css = h("link", { rel: "stylesheet", href: PLAYER_CSS });
      const js = h("script", { src: PLAYER_JS });
      js.addEventListener("load", () => resolve(window.AsciinemaPlayer));
      js.addEventListener("error", () => {
        playerLoading = null;
        reject(new Error("the recordings player is missing (run python frontend/build.py)"));
      });
      document.head.append(css, js);
    });
  }
  return playerLoading;
}

export function init() {
  $("#rec-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadList();
  });
  $("#rec-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search();
  });
  $("#rec-more").addEventListener("click", () => loadList({ more: true }));
}

export function show() {
  loadList();
}

export function hide() {
  if (player) player.pause();
}

function filterQuery() {
  const params = [];
  const add = (key, value) => { if (value) params.push(`${key}=${enc(value)}`); };
  add("target", $("#rec-target").value.trim());
  add("user", $("#rec-user").value.trim());
  // Dates from <input type=date> are whole days in UTC: "to" includes its whole day.
  const from = $("#rec-from").value;
  const to = $("#rec-to").value;
  add("from", from && `${from}T00:00:00Z`);
  add("to", to && `${to}T23:59:59.999999Z`);
  return params;
}

async function loadList({ more = false } = {}) {
  const list = $("#rec-list");
  const params = filterQuery();
  if (more && nextCursor) params.push(`cursor=${enc(nextCursor)}`);
  let page;
  try {
    page = await api.request("GET", `/api/terminal/recordings${params.length ? "?" + params.join("&") : ""}`);
  } catch (err) {
    if (err.status === 403) {
      list.replaceChildren(h("p", { class: "empty", text: "Recordings are not available to your role." }));
      return;
    }
    showError(err, "Loading recordings");
    return;
  }
  const rows = page.recordings.map((r) => {
    const open = h("button", { class: "btn btn-small", type: "button", text: "Play", dataset: { recording: String(r.id) } });
    open.addEventListener("click", () => openPlayer(r.id, 0, `${r.target} · ${r.user} · ${fmtTime(r.started)}`));
    return h("tr", { dataset: { recording: String(r.id) } },
      h("td", { text: fmtTime(r.started) }), h("td", { text: r.target }), h("td", { text: r.user }),
      h("td", { text: r.ended ? fmtDuration(r.duration) : "live" }),
      h("td", { text: r.cut_reason ? `cut: ${r.cut_reason}` : "" }), h("td", {}, open));
  });
  const body = more ? $("#rec-list tbody") : null;
  if (body) body.append(...rows);
  else if (!rows.length) list.replaceChildren(h("p", { class: "empty", text: "No recordings match." }));
  else {
    list.replaceChildren(h("table", { class: "table rec-table" },
      h("thead", {}, h("tr", {}, ...["Started", "Link", "User", "Duration", "", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...rows)));
  }
  nextCursor = page.next_cursor;
  $("#rec-more").hidden = !nextCursor;
}

async function search() {
  const q = $("#rec-q").value.trim();
  const out = $("#rec-hits");
  if (!q) {
    out.replaceChildren();
    return;
  }
  let result;
  try {
    result = await api.request("GET", `/api/terminal/recordings/search?q=${enc(q)}`);
  } catch (err) {
    if (err.status === 400) {
      out.replaceChildren(h("p", { class: "empty", text: err.message }));
      return;
    }
    showError(err, "Searching recordings");
    return;
  }
  if (!result.hits.length) {
    out.replaceChildren(h("p", { class: "empty", text: `Nothing recorded matches “${q}”.` }));
    return;
  }
  out.replaceChildren(h("ul", { class: "rec-hits" }, ...result.hits.map((hit) => {
    const when = new Date(new Date(hit.started).getTime() + hit.offset_seconds * 1000);
    const btn = h("button", { class: "rec-hit", type: "button", dataset: { recording: String(hit.recording_id), offset: String(hit.offset_seconds) } },
      h("span", { class: "rec-hit-meta", text: `${hit.target} · ${hit.user} · ${fmtTime(when.toISOString())}` }),
      h("code", { class: "rec-hit-line", text: hit.line }));
    btn.addEventListener("click", () => openPlayer(hit.recording_id, hit.offset_seconds, `${hit.target} · ${hit.user} · ${fmtTime(when.toISOString())}`));
    return h("li", {}, btn);
  })));
}

async function openPlayer(id, offset, title) {
  const box = $("#rec-player");
  let AP;
  let cast;
  try {
    [AP, cast] = await Promise.all([loadPlayer(), fetch(`/api/terminal/recordings/${id}`, { credentials: "same-origin" })
      .then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); return r.text(); })]);
  } catch (err) {
    showError(err, "Opening the recording");
    return;
  }
  if (player) player.dispose();
  const screen = h("div", { class: "rec-screen" });
  box.replaceChildren(h("header", { class: "card-head" }, h("h2", { text: title }),
    h("span", { class: "muted", text: `at ${fmtDuration(offset)}` })), screen);
  box.hidden = false;
  box.dataset.recording = String(id);
  box.dataset.offset = String(offset);
  // The hit's offset is the moment its line was complete on the screen: show that frame
  // (the poster, drawn once the recording is loaded), then seek there once the player is
  // ready, so Play continues from that moment.
  box.dataset.ready = "false";
  player = AP.create({ data: cast }, screen, {
    startAt: offset, preload: true, poster: `npt:${offset}`, fit: "width",
  });
  const current = player;
  current.addEventListener("ready", async () => {
    try {
      await current.seek(offset);
    } catch {
      // the poster already shows the moment
    }
    if (player === current) box.dataset.ready = "true";
  });
  box.scrollIntoView({ block: "nearest" });
}
