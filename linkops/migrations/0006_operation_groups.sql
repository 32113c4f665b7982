-- SPEC §10.3: output groups, paged output, rerun links and plans.
-- Written once when a task ends (operations/groups.py): the fingerprint of its normalised
-- output, the normalised heads the groups view shows, the raw heads and kept sizes the
-- operation view shows. A table of its own: columns appended to operation_logs would sit
-- behind stdout/stderr in the record, and SQLite walks a large output's overflow pages to
-- reach them, so every groups request would read all the outputs after all.
CREATE TABLE operation_task_outputs (
    log_id INTEGER PRIMARY KEY REFERENCES operation_logs (id) ON DELETE CASCADE,
    output_hash TEXT NOT NULL,
    norm_stdout_head TEXT NOT NULL,
    norm_stderr_head TEXT NOT NULL,
    stdout_head TEXT NOT NULL,
    stderr_head TEXT NOT NULL,
    stdout_bytes INTEGER NOT NULL,
    stderr_bytes INTEGER NOT NULL
);
-- Covers the groups query: the task columns it needs come from the index alone, never from
-- the large rows that hold the outputs.
CREATE INDEX operation_logs_tasks ON operation_logs (operation_id, target, position, script, status, exit_code);
-- A rerun's parent operation, and the plan an operation was confirmed with (JSON).
ALTER TABLE operations ADD COLUMN parent TEXT;
ALTER TABLE operations ADD COLUMN plan TEXT;
CREATE INDEX operations_parent ON operations (parent) WHERE parent IS NOT NULL;
-- POST /api/operations/plan: what a run will do, kept until it expires.
CREATE TABLE operation_plans (
    id TEXT PRIMARY KEY,
    created_by TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    request TEXT NOT NULL,
    plan TEXT NOT NULL
);
CREATE INDEX operation_plans_expires ON operation_plans (expires_at);
