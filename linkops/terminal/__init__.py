"""Terminal workspaces: up to four live SSH shells per workspace over one WebSocket.

- :mod:`~linkops.terminal.workspaces` — workspaces, panes and the session audit trail in SQLite
- :mod:`~linkops.terminal.protocol` — the WebSocket message format (parse, build, decode)
- :mod:`~linkops.terminal.buffers` — bounded outboxes, scrollback ring, round-robin rounds
- :mod:`~linkops.terminal.session` — one pane's SSH PTY and its two pumps
- :mod:`~linkops.terminal.service` — :class:`TerminalService`: sessions, sockets, grace period
- :mod:`~linkops.terminal.socket` — the reader/writer pumps of one WebSocket

Decisions: docs/decisions/terminal.md.
"""
