"""Runner: imports every ``bench/*_bench.py`` module and calls its ``main()``.

``python -m bench [--quick] [NAME ...]`` runs only the modules whose name contains one of
NAMEs; arguments starting with ``--`` are options the benchmarks read themselves (``--quick``:
small sizes, one repeat — see bench/common.py).
Exit code 1 if any benchmark raised (the others still run).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(
        info.name for info in pkgutil.iter_modules([str(here)]) if info.name.endswith("_bench")
    )


def run(selected: list[str]) -> int:
    names = [n for n in discover() if not selected or any(s in n for s in selected)]
    if not names:
        print(f"no benchmark matches {selected}", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            module.main()
        except Exception:
            failed += 1
            traceback.print_exc()
        print(f"== {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run([arg for arg in sys.argv[1:] if not arg.startswith("--")]))
