"""Operations: running vetted bash scripts on many links at once, live, stoppable, recorded.

* :mod:`.validate` — request body → :class:`~.validate.Plan` (or an error before anything runs);
* :mod:`.store` — every write to ``operations`` / ``operation_logs``;
* :mod:`.orchestrator` — one operation: nursery + ``CapacityLimiter`` + cancel scope;
* :mod:`.remote` — how a script is launched on a host and how its process group is killed;
* :mod:`.output` — incremental UTF-8 decoding and the bounded head+tail buffer;
* :mod:`.events` — the per-operation :class:`~.events.EventHub` (replay log, fan-out) and SSE;
* :mod:`.history` — reads: history list, operation view, replay events of a finished one;
* :mod:`.status` — the states and the pure success/failed/partial rule;
* :mod:`.service` — :class:`~.service.OperationsService`, what the server and routes use.
"""
