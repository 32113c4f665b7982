"""``python -m bench.profile_server OUT.prof serve --config …``: the server under cProfile.

cProfile sees the Trio thread only (where every request, event and DB hand-off is handled);
worker threads (paramiko transports, pumps) are not in the profile. The timer is that thread's
own CPU time (``time.thread_time``), so time spent waiting — for the GIL, for epoll — does not
show up as cost; set ``LINKOPS_BENCH_PROFILE_WALL=1`` for wall-clock time instead. The stats are
written when the server exits gracefully (SIGTERM). Enable it for any bench with
``LINKOPS_BENCH_PROFILE=DIR`` (see :class:`bench.common.ServerProcess`).
"""

from __future__ import annotations

import cProfile
import os
import sys
import time

from linkops.cli import main

if __name__ == "__main__":
    wall = os.environ.get("LINKOPS_BENCH_PROFILE_WALL") == "1"
    profile = cProfile.Profile(time.perf_counter if wall else time.thread_time)
    profile.enable()
    try:
        code = main(sys.argv[2:])
    finally:
        profile.disable()
        profile.dump_stats(sys.argv[1])
    sys.exit(code)
