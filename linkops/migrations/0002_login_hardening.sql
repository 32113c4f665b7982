-- SPEC §10.2: indexed lock queries, pruning by time, counted refusals, API tokens.

-- The lock query reads one name's failures after its last success: (name, outcome, time)
-- answers both parts with an index range; pruning by age uses the time index.
DROP INDEX IF EXISTS auth_attempts_user_time;
CREATE INDEX auth_attempts_user_outcome_time ON auth_attempts (username_norm, success, attempted_at);
CREATE INDEX auth_attempts_time ON auth_attempts (attempted_at);

-- Attempts refused because the name was locked: one counter per (name, client), not a row per
-- try (remote_addr '' when unknown: a primary key column must not be NULL).
CREATE TABLE auth_refusals (
    username_norm TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    refused INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    PRIMARY KEY (username_norm, remote_addr)
);
CREATE INDEX auth_refusals_last ON auth_refusals (last_at);

-- API tokens for automation: only the SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    username_norm TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (username_norm, created_at);
