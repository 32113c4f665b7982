"""A host printing 200 MB (random bytes: binary and invalid UTF-8) keeps memory bounded."""

from __future__ import annotations

import os

import psutil
import pytest
import trio

from tests.fixtures_operations import OpsHarness, seed_links, seed_script

BASH = "#!/bin/bash\n"


@pytest.fixture
def ops_overrides() -> dict[str, dict[str, object]]:
    return {"operations": {"script_timeout": 140}}


async def test_huge_output_keeps_memory_bounded(ops: OpsHarness) -> None:
    """A host prints 200 MB (binary, invalid UTF-8 included); RSS of this process (which runs
    the service) grows by far less, and the stored output is capped with a marker."""
    with trio.fail_after(150):
        seed_links(ops.db, ops.env, ["ops-09"])
        seed_script(ops.db, "flood", BASH + "head -c 209715200 /dev/urandom\necho done >&2\n")
        proc = psutil.Process(os.getpid())
        before = proc.memory_info().rss
        peak = before
        done = trio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, proc.memory_info().rss)
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            _, view = await ops.run({"scripts": ["flood"], "targets": ["ops-09"]}, timeout=140)
            done.set()
        log = view["logs"][0]
        assert log["status"] == "success", log["error"]
        assert log["output_truncated"] is True
        assert "[linkops: output truncated" in log["stdout"]
        limit = ops.settings.operations.output_buffer_size
        assert len(log["stdout"].encode()) < limit + 200
        assert log["stderr"] == "done\n"
        assert peak - before < 120 * 1024 * 1024, (peak - before) / 2**20
