"""Benchmarks: each ``bench/<area>_bench.py`` module exposes ``main() -> None``.

Run them all with ``python -m bench`` (``nox -s bench``), or some with
``python -m bench tables``. Each benchmark measures its own baseline in the same run and prints
ratios, so numbers from different machines are comparable.
"""
