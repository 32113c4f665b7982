-- Every table of SPEC §6 plus users and token revocation. Times are ISO-8601 UTC text
-- (linkops.timeutil), JSON columns hold JSON text.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    username_norm TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'admin',
    password_version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE auth_attempts (
    id INTEGER PRIMARY KEY,
    username_norm TEXT NOT NULL,
    success INTEGER NOT NULL,
    remote_addr TEXT,
    attempted_at TEXT NOT NULL
);
CREATE INDEX auth_attempts_user_time ON auth_attempts (username_norm, attempted_at);

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

CREATE TABLE machines (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    provider TEXT,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    user TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    client_id TEXT NOT NULL,
    enrollment_required INTEGER NOT NULL DEFAULT 1,
    client_id_path TEXT NOT NULL DEFAULT '/etc/linkops/client_id',
    key_ref TEXT,
    proxy_jump TEXT,
    host_key TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    icon TEXT,
    enrolled INTEGER NOT NULL DEFAULT 0,
    enrollment_verified_at TEXT,
    enrollment_error TEXT,
    status TEXT NOT NULL DEFAULT 'unknown',
    reachable INTEGER,
    latency_ms REAL,
    last_seen TEXT,
    last_check TEXT,
    health_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX machines_type ON machines (type, id);
CREATE INDEX machines_status ON machines (status, id);
CREATE INDEX machines_enrolled ON machines (enrolled, id);
-- Table engine (linkops/tables): filter by type + sort by name, sort by name or last_seen,
-- and the per-type counts of tbl_infrastructure from the index alone.
CREATE INDEX machines_type_name ON machines (type, name, id);
CREATE INDEX machines_name ON machines (name, id);
CREATE INDEX machines_last_seen ON machines (last_seen, id);
CREATE INDEX machines_type_counts ON machines (type, status, enrolled);

CREATE TABLE scripts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    emoji TEXT,
    path TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT '[]',
    estimated_duration INTEGER,
    tags TEXT NOT NULL DEFAULT '[]',
    sha256 TEXT NOT NULL,
    content TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE operations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    scripts TEXT NOT NULL,
    targets TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT '{}',
    concurrency INTEGER NOT NULL,
    require_enrollment INTEGER NOT NULL DEFAULT 1,
    triggered_by TEXT,
    commit_hash TEXT,
    script_hashes TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    duration REAL,
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX operations_status ON operations (status, created_at);
CREATE INDEX operations_created ON operations (created_at, seq);
CREATE INDEX operations_started ON operations (started_at, seq);
-- tbl_operations (active): a few queued/running rows among 100k finished ones. The WHERE
-- must stay textually identical to the table's source for SQLite to use this partial index.
CREATE INDEX operations_active ON operations (created_at, seq) WHERE status IN ('queued', 'running');

CREATE TABLE operation_logs (
    id INTEGER PRIMARY KEY,
    operation_id TEXT NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    script TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    output_truncated INTEGER NOT NULL DEFAULT 0,
    duration REAL,
    started_at TEXT,
    ended_at TEXT,
    error TEXT,
    remote_killed INTEGER,
    -- The remote process group of a running task, so a restarted service can kill it.
    remote_pgid INTEGER,
    UNIQUE (operation_id, target, script, position)
);
CREATE INDEX operation_logs_op ON operation_logs (operation_id, target, position);

CREATE TABLE terminal_workspaces (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    layout TEXT NOT NULL,
    max_panes INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT
);
CREATE INDEX terminal_workspaces_owner ON terminal_workspaces (owner, closed_at);

CREATE TABLE terminal_panes (
    workspace_id TEXT NOT NULL REFERENCES terminal_workspaces (id) ON DELETE CASCADE,
    pane TEXT NOT NULL,
    target TEXT,
    status TEXT NOT NULL DEFAULT 'idle',
    cols INTEGER NOT NULL DEFAULT 80,
    rows INTEGER NOT NULL DEFAULT 24,
    connected_at TEXT,
    disconnected_at TEXT,
    error TEXT,
    PRIMARY KEY (workspace_id, pane)
);

-- The audit trail of every terminal session that was opened.
CREATE TABLE terminal_sessions (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    pane TEXT NOT NULL,
    target TEXT NOT NULL,
    username TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    close_reason TEXT
);
CREATE INDEX terminal_sessions_opened ON terminal_sessions (opened_at, id);

CREATE TABLE git_sync_history (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL DEFAULT 'manual',
    commit_hash TEXT,
    previous_commit TEXT,
    forced INTEGER NOT NULL DEFAULT 0,
    changes TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX git_sync_history_started ON git_sync_history (started_at, id);
