"""``python -m bench.profile_server OUT.prof serve --config …``: the server under cProfile.

cProfile sees the Trio thread only (where every request, event and DB hand-off is handled);
worker threads (paramiko transports, pumps) are not in the profile. The stats are written
when the server exits gracefully (SIGTERM).
"""

from __future__ import annotations

import cProfile
import sys

from linkops.cli import main

if __name__ == "__main__":
    profile = cProfile.Profile()
    profile.enable()
    try:
        code = main(sys.argv[2:])
    finally:
        profile.disable()
        profile.dump_stats(sys.argv[1])
    sys.exit(code)
