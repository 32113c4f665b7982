-- Session recordings (SPEC §10.4): one row per recorded pane session; the .cast file lives
-- under [terminal] recordings_path (path is relative to it).
CREATE TABLE terminal_recordings (
    id INTEGER PRIMARY KEY,
    session_id INTEGER,
    workspace_id TEXT NOT NULL,
    pane TEXT NOT NULL,
    target TEXT NOT NULL,
    username TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    duration REAL NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    cut_reason TEXT
);
CREATE INDEX terminal_recordings_started ON terminal_recordings (started_at, id);
CREATE INDEX terminal_recordings_user ON terminal_recordings (username, started_at);

-- The recorded output as plain text, one row per screen line, with its time offset.
CREATE TABLE terminal_recording_lines (
    id INTEGER PRIMARY KEY,
    recording_id INTEGER NOT NULL REFERENCES terminal_recordings (id) ON DELETE CASCADE,
    offset_seconds REAL NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX terminal_recording_lines_recording ON terminal_recording_lines (recording_id);

-- Full-text index over the lines (external content: the text is stored once, above).
CREATE VIRTUAL TABLE terminal_recording_fts USING fts5(
    line, content = 'terminal_recording_lines', content_rowid = 'id'
);
CREATE TRIGGER terminal_recording_lines_ai AFTER INSERT ON terminal_recording_lines BEGIN
    INSERT INTO terminal_recording_fts (rowid, line) VALUES (new.id, new.line);
END;
CREATE TRIGGER terminal_recording_lines_ad AFTER DELETE ON terminal_recording_lines BEGIN
    INSERT INTO terminal_recording_fts (terminal_recording_fts, rowid, line)
    VALUES ('delete', old.id, old.line);
END;

-- Who read which recording, who broadcast input to which panes (SPEC §10.4 "audited").
CREATE TABLE terminal_audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX terminal_audit_at ON terminal_audit (at, id);
