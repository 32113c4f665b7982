"""The end-to-end benchmarks still run and produce sane numbers (tiny sizes, ~20 s in all).

Each test drives the same functions ``nox -s bench`` uses — the server as a subprocess, a real
sandbox fleet, the baselines in their own processes — with minimal sizes, and checks that the
figures are physically plausible (not that they meet the performance goals: that is the
benchmark's job, on a quiet machine). Blocking parts run in a worker thread under
``trio.fail_after``.
"""

from __future__ import annotations

from pathlib import Path

import trio

from bench import fanout_bench, groups_bench, recording_bench, streaming_bench, terminal_bench
from bench.common import ServerProcess, Table, client_files, fleet_links
from linkops.sandbox import Sandbox


async def test_fanout_cell_measures_linkops_and_every_baseline(tmp_path: Path) -> None:
    def work() -> fanout_bench.Cell:
        with Sandbox(tmp_path / "fleet", hosts=2, prefix="smokefan") as fleet:
            key, known_hosts = client_files(fleet, tmp_path / "client")
            return fanout_bench.run_cell(fleet, tmp_path, key, known_hosts, 4, 4, 1)

    with trio.fail_after(90):
        cell = await trio.to_thread.run_sync(work, abandon_on_cancel=True)
    names = ("linkops", "linkops-reused", *fanout_bench.BASELINES)
    assert set(cell.samples) == {*names, "linkops-both-runs"}
    for name in names:
        # One wave of `sleep 0.2` on 4 links at concurrency 4: never faster than the sleep.
        assert 0.2 <= cell.elapsed(name) < 30, (name, cell.samples[name])
    assert 0 < cell.cpu_per_link_ms("linkops") < 1000
    # The targets ran sshd sessions and shells for every link: their CPU was counted.
    assert 0 < cell.cpu_per_link_ms("linkops-both-runs", "targets_cpu") < 1000
    assert all(0 < cell.cpu_per_link_ms(b, "targets_cpu") < 1000 for b in fanout_bench.BASELINES)
    table = Table("smoke")
    fanout_bench.report_cell(table, cell)
    assert len(table.rows) == 4 and "N=4 C=4" in table.render()


async def test_streaming_counts_every_byte_and_the_server_memory(tmp_path: Path) -> None:
    mib = 1

    def work() -> tuple[dict[str, float], dict[str, float]]:
        with Sandbox(tmp_path / "fleet", hosts=1, prefix="smokestream") as fleet:
            key, known_hosts = client_files(fleet, tmp_path / "client")
            link = fleet_links(fleet, 1, prefix="smokestream")[0]
            script = f"#!/bin/bash\n{streaming_bench.stream_command(mib)}\n"
            with ServerProcess(tmp_path / "server", fleet) as server:
                server.seed([link], {"smoke-stream": script})
                with server.client(timeout=60) as http:
                    ours = streaming_bench.linkops_stream(server, http, link.id, "smoke-stream")
                theirs = streaming_bench.paramiko_stream(
                    key, known_hosts, link, streaming_bench.stream_command(mib))
            return ours, theirs

    with trio.fail_after(90):
        ours, theirs = await trio.to_thread.run_sync(work, abandon_on_cancel=True)
    assert ours["bytes"] == theirs["bytes"] == streaming_bench.expected_bytes(mib) > 2**20
    assert 0 < ours["elapsed"] < 60 and 0 < theirs["elapsed"] < 60
    assert 20 * 2**20 < ours["peak_rss"] < 2**30
    table = Table("smoke")
    streaming_bench.report_stream(table, mib, [ours], [theirs], int(ours["rss_before"]))
    assert "stream 1 MiB" in table.render()


async def test_terminal_latency_and_throughput_are_measured(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "fleet", hosts=2, prefix="term") as fleet:
        key, known_hosts = client_files(fleet, tmp_path / "client")
        big_file = tmp_path / "big.txt"
        terminal_bench.write_big_file(big_file, 1)
        with ServerProcess(tmp_path / "server", fleet) as server:
            server.seed(fleet_links(fleet, 2, prefix="term"))
            with trio.fail_after(90):
                got = await terminal_bench.terminal_e2e(server, fleet, big_file, 5, 1, key,
                                                        known_hosts, flood_chars=100_000,
                                                        flow_deadline=20)
    assert not got.flow_stalled
    assert len(got.idle) == len(got.flooded) == len(got.flooded_flow) == 5
    assert all(0 < s < 5 for s in got.idle + got.flooded + got.flooded_flow)
    assert len(got.paramiko_echo) == 5 and all(0 < s < 5 for s in got.paramiko_echo)
    size = big_file.stat().st_size
    # The PTY turns each "\n" into "\r\n": at least the file's size arrives, per second > 0.
    assert got.rates[0] > 0 and got.paramiko[0] > 0 and got.paramiko_1k[0] > 0
    assert got.flood_rate > 0 and size > 2**19



async def test_groups_bench_measures_the_endpoint_and_the_grouping_cost(tmp_path: Path) -> None:
    def work() -> tuple[list[float], list[float], dict[str, float]]:
        with Sandbox(tmp_path / "fleet", hosts=1, prefix="smokegrp") as fleet, \
                ServerProcess(tmp_path / "server", fleet) as server:
            op_id = groups_bench.populate(server.db_path, 60)
            groups = groups_bench.request_latency(server, f"/api/operations/{op_id}/groups", 3)
            view = groups_bench.request_latency(server, f"/api/operations/{op_id}", 3)
        return groups, view, groups_bench.grouping_cpu(60)

    with trio.fail_after(90):
        groups, view, cpu = await trio.to_thread.run_sync(work, abandon_on_cancel=True)
    assert len(groups) == len(view) == 3 and all(0 < t < 10 for t in groups + view)
    # 60 tasks: the common output, variants 5 and 17 and 29 and 41 and 53, and one failure
    assert cpu["groups"] == 7
    assert 0 < cpu["sha256"] < cpu["per_task"] < 0.05
    table = Table("smoke")
    groups_bench.report(table, groups, view, cpu, 60)
    assert "GET …/groups, 60 tasks" in table.render() and len(table.rows) == 2


async def test_recording_bench_compares_on_off_and_times_search(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "fleet", hosts=1, prefix="smokerec") as fleet:
        with trio.fail_after(120):
            # 4 MB: CPU is counted in 10 ms ticks, a smaller flood may cost the service
            # less than one (a fast machine measured 0 for 256 KiB).
            got = await recording_bench.on_off(fleet, tmp_path, pairs=2,
                                               flood_bytes=4 * 1024 * 1024, samples=3)
    for samples in (got.on, got.off):
        assert len(samples) == 2
        for sample in samples:
            assert 10_000 < sample.throughput < 10_000_000_000, sample  # chars/s
            assert 0 < sample.cpu_per_mb < sample.machine_per_mb < 10, sample  # s per MB
            assert len(sample.echo) == 3 and all(0 < t < 10 for t in sample.echo)
    # 4 MB is far below what the recorder may queue: nothing is cut; "off" has no recording.
    assert got.cuts() == 0 and all(s.cut is None for s in got.off)
    assert len(got.ratios()) == 2 and all(0.1 < r < 10 for r in got.ratios())
    mean, low, high = recording_bench.geometric_ci95(got.ratios())
    assert min(got.ratios()) <= low <= mean <= high <= max(got.ratios())
    assert recording_bench.geometric_ci95([1.0] * 5) == (1.0, 1.0, 1.0)
    table = Table("smoke")
    recording_bench.report_on_off(table, got, 0)
    assert [row[:2] for row in table.rows][-1] == ("recordings cut under the flood", "0 of 2")
    assert "throughput, recording on vs off (2 pairs" in table.render()
    db_path = tmp_path / "search.db"
    with trio.fail_after(120):
        plan = await trio.to_thread.run_sync(recording_bench.generate, db_path, 1.0)
        timings = await recording_bench.search_p95(db_path, plan, 3)
    assert plan["recordings"] >= 1
    assert timings and all(len(v) == 3 and all(0 < t < 10 for t in v)
                           for v in timings.values())
