"""schemathesis over the service's own document, against a real ``linkops serve`` with a
bearer token (SPEC §10.1): on every operation, a bounded number of generated requests, each
checked with ``not_a_server_error`` and ``response_schema_conformance``.

The service syncs a real Git repository first (so inventory routes answer from real rows;
its links list is empty, so ``POST /api/links/verify`` never waits on SSH timeouts).
``POST /api/auth/logout`` revokes the token it is called with, so it is fuzzed last. The
WebSocket route is fuzzed as what a plain HTTP client sees (no upgrade).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fixtures_git import make_repo
from tests.serve_process import ServeProcess, serving

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    repo_root = tmp_path_factory.mktemp("repo")
    repo = make_repo(repo_root)
    repo.write("links.yaml", "links: {}\n")
    repo.commit_and_push("no links")
    root = tmp_path_factory.mktemp("serve")
    with serving(root, git={"repository_url": str(repo.bare), "sync_interval_minutes": 0}) as proc:
        token = proc.token()
        sync = httpx.post(f"{proc.base_url}/api/git/sync", timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
        assert sync.status_code == 200, sync.text
        yield proc


def test_every_operation_survives_schemathesis(served: ServeProcess, tmp_path: Path) -> None:
    document = httpx.get(f"{served.base_url}/api/openapi.json", timeout=20).json()
    schema = schemathesis.openapi.from_dict(document)
    # Logout revokes the token it is sent with: fuzz it last (its later cases get a 401,
    # which is documented), so every other operation runs signed in with one login.
    operations = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda op: op.path == "/api/auth/logout")
    assert len(operations) == sum(len(ops) for ops in document["paths"].values())
    token = served.token()
    failures: list[str] = []
    calls: dict[str, int] = {}
    for operation in operations:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            key = f"{case.method} {case.path}"
            calls[key] = calls.get(key, 0) + 1
            case.call_and_validate(
                base_url=served.base_url, headers={"Authorization": f"Bearer {token}"},
                checks=[not_a_server_error, response_schema_conformance], timeout=30)

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(calls) == len(operations), sorted(calls)
    assert sum(calls.values()) >= 3 * len(operations), calls
    log = served.log.read_text(encoding="utf-8")
    assert "api.unexpected_error" not in log
