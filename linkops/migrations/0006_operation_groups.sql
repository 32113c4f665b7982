-- SPEC §10.3: output groups, paged output, rerun links and plans.
-- Written once when a task ends (operations/groups.py): the fingerprint of its normalised
-- output, the normalised heads the groups view shows, the raw heads and kept sizes the
-- operation view shows (so neither reads whole outputs).
ALTER TABLE operation_logs ADD COLUMN output_hash TEXT;
ALTER TABLE operation_logs ADD COLUMN norm_stdout_head TEXT;
ALTER TABLE operation_logs ADD COLUMN norm_stderr_head TEXT;
ALTER TABLE operation_logs ADD COLUMN stdout_head TEXT;
ALTER TABLE operation_logs ADD COLUMN stderr_head TEXT;
ALTER TABLE operation_logs ADD COLUMN stdout_bytes INTEGER;
ALTER TABLE operation_logs ADD COLUMN stderr_bytes INTEGER;
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
