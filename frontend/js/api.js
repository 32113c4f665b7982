// The one place that knows the LinkOps HTTP API: paths, headers, error shape and the
// response wrappers. Every other module calls these functions, so an API change is a
// one-line change here.
//
// Auth is the HttpOnly session cookie set at login: fetch sends it with
// credentials "same-origin", EventSource and WebSocket send it on their own. The token the
// login response also carries is deliberately ignored (never stored in JS-readable storage).

/** An API failure in the SPEC shape {error: {code, message, details, timestamp}}. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}, timestamp = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.timestamp = timestamp;
  }
}

// The server requires this header on cookie-authenticated state-changing requests (CSRF
// defence: a cross-site form cannot set it, a cross-site fetch with it needs CORS).
const BASE_HEADERS = { "X-Requested-With": "linkops", Accept: "application/json" };

let unauthorizedHandler = null;

/** Called once by the app: what to do when any request answers 401 (back to login). */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

/**
 * One JSON request. Resolves with the decoded body (null when empty); rejects with ApiError
 * for network failures (status 0) and every non-2xx answer.
 */
export async function request(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { ...BASE_HEADERS } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "NETWORK_ERROR", `Cannot reach the LinkOps service (${exc.message}).`);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    const apiErr = new ApiError(
      resp.status,
      err.code || `HTTP_${resp.status}`,
      err.message || `${method} ${path} failed with HTTP ${resp.status} ${resp.statusText}`,
      err.details,
      err.timestamp,
    );
    if (resp.status === 401 && !path.startsWith("/api/auth/login") && unauthorizedHandler) {
      unauthorizedHandler(apiErr);
    }
    throw apiErr;
  }
  return data;
}

/** The list inside a response that may be a bare array or {<key>: [...]} / {items: [...]}. */
export function listOf(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  if (data && Array.isArray(data.items)) return data.items;
  if (data && Array.isArray(data.rows)) return data.rows;
  return [];
}

const enc = encodeURIComponent;

// ---- auth ---------------------------------------------------------------------------------
export const login = (username, password) =>
  request("POST", "/api/auth/login", { username, password }).then((r) => ({
    user: (r && r.user) || { username },
    expiresAt: r && r.expires_at,
  }));
export const logout = () => request("POST", "/api/auth/logout", {});
export const me = () => request("GET", "/api/auth/me").then((r) => (r && r.user) || r);

// ---- inventory ----------------------------------------------------------------------------
/** Fill the fields the UI reads so a missing nested object never throws later. */
export function normaliseLink(raw) {
  const l = raw || {};
  const ssh = l.ssh || {};
  const health = l.health || {};
  return {
    ...l,
    id: String(l.id ?? ""),
    name: l.name || l.id || "",
    type: l.type || "",
    provider: l.provider || "",
    tags: Array.isArray(l.tags) ? l.tags : [],
    enrolled: Boolean(l.enrolled),
    enrollmentId: l.enrollmentId || l.enrollment_id || "",
    enrollmentVerifiedAt: l.enrollmentVerifiedAt || l.enrollment_verified_at || null,
    enrollmentError: l.enrollmentError || l.enrollment_error || "",
    enrollmentRequired: l.enrollmentRequired !== false,
    clientIdPath: l.clientIdPath || "/etc/linkops/client_id",
    ssh: {
      host: ssh.host || "",
      port: ssh.port ?? "",
      user: ssh.user || "",
      proxyJump: ssh.proxyJump || null,
      keyRef: ssh.keyRef || null,
    },
    health: {
      reachable: Boolean(health.reachable),
      latency: health.latency ?? null,
      lastSeen: health.lastSeen || health.last_seen || null,
      error: health.error || "",
    },
    status: l.status || "unknown",
    metadata: l.metadata && typeof l.metadata === "object" ? l.metadata : {},
  };
}

export const links = () =>
  request("GET", "/api/links").then((r) => listOf(r, "links").map(normaliseLink));
export const link = (id) =>
  request("GET", `/api/links/${enc(id)}`).then((r) => normaliseLink((r && r.link) || r));
export const verifyLink = (id) => request("POST", `/api/links/${enc(id)}/verify`, {});

export function normaliseScript(raw) {
  const s = raw || {};
  return {
    ...s,
    id: String(s.id ?? ""),
    name: s.name || s.id || "",
    description: s.description || "",
    emoji: s.emoji || "",
    flags: Array.isArray(s.flags) ? s.flags.map(String) : [],
    tags: Array.isArray(s.tags) ? s.tags : [],
  };
}
export const scripts = () =>
  request("GET", "/api/scripts").then((r) => listOf(r, "scripts").map(normaliseScript));

// ---- git ----------------------------------------------------------------------------------
export const gitStatus = () => request("GET", "/api/git/status");
export const gitSync = () => request("POST", "/api/git/sync", {});

// ---- operations ---------------------------------------------------------------------------
/** History page (newest first): {operations, page, pageSize, hasNext}. */
export async function operations({ status = "", page = 1, pageSize = 20 } = {}) {
  const q = new URLSearchParams();
  if (status) q.set("status", status);
  q.set("page", String(page));
  q.set("limit", String(pageSize));
  const r = await request("GET", `/api/operations?${q}`);
  const ops = listOf(r, "operations");
  const p = (r && r.page) || {};
  const hasNext = "next_cursor" in p ? Boolean(p.next_cursor) : ops.length >= pageSize;
  return { operations: ops, page, pageSize, hasNext };
}
export const operation = (id) => request("GET", `/api/operations/${enc(id)}`);
export const runOperation = (body) => request("POST", "/api/operations/run", body);
export const stopOperation = (id) => request("POST", `/api/operations/${enc(id)}/stop`, {});
export const operationEventsUrl = (id) => `/api/operations/${enc(id)}/events`;
// One page of a task's kept output: {data, offset, next_offset, total, truncated}.
export const taskOutput = (id, target, script, stream, offset = 0, limit = 1048576) =>
  request("GET", `/api/operations/${enc(id)}/tasks/${enc(target)}/${enc(script)}/output` +
    `?stream=${enc(stream)}&offset=${enc(offset)}&limit=${enc(limit)}`);

// ---- plan and confirm (js/plandialog.js) ---------------------------------------------------
// The run body → {plan_id, inventory_commit, targets, scripts, concurrency, confirm, …}.
export const planOperation = (body) => request("POST", "/api/operations/plan", body);
// One script with its text ({…, sha256, content}).
export const script = (id) => request("GET", `/api/scripts/${enc(id)}`).then((r) => (r && r.script) || r);
// Output groups (SPEC §10.3): {script_groups: [{script, position, majority, groups}], unfinished}.
export const operationGroups = (id) => request("GET", `/api/operations/${enc(id)}/groups`);
// Unified diff of a group's normalised output against `against` ("majority" or a group key).
export const groupDiff = (id, key, against = "majority") =>
  request("GET", `/api/operations/${enc(id)}/groups/${enc(key)}/diff?against=${enc(against)}`);
// {which: "failed"|"unfinished"|"group", group?, plan_id?, confirm?} → {operation_id, parent, targets}.
export const rerunOperation = (id, body) => request("POST", `/api/operations/${enc(id)}/rerun`, body);

// ---- tables -------------------------------------------------------------------------------
export const tableQuery = (table, opts = {}) =>
  request("POST", "/api/tables/query", { table, ...opts }).then((r) => ({
    rows: listOf(r, "rows"),
    page: (r && r.page) || {},
    meta: (r && r.meta) || {},
  }));

// ---- terminal -----------------------------------------------------------------------------
const WS = "/api/terminal/workspaces";
// max_panes left out on purpose: the server then allows the configured maximum, so a later
// layout change (PATCH) never needs a new workspace.
export const createWorkspace = (layout) =>
  request("POST", WS, { layout }).then((r) => r.workspace_id || r.id);
export const setWorkspaceLayout = (id, layout) => request("PATCH", `${WS}/${enc(id)}`, { layout });
export const getWorkspace = (id) => request("GET", `${WS}/${enc(id)}`);
export const deleteWorkspace = (id) => request("DELETE", `${WS}/${enc(id)}`);
export const assignPanes = (id, panes) => request("PUT", `${WS}/${enc(id)}/panes`, { panes });
export const connectAll = (id) => request("POST", `${WS}/${enc(id)}/connect-all`, {});
export const connectPane = (id, pane) =>
  request("POST", `${WS}/${enc(id)}/panes/${enc(pane)}/connect`, {});
export const disconnectPane = (id, pane) =>
  request("POST", `${WS}/${enc(id)}/panes/${enc(pane)}/disconnect`, {});
export function workspaceSocketUrl(id) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${WS}/${enc(id)}/ws`;
}
