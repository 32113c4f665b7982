"""Git over HTTPS with a token, against a real smart-HTTP server (git http-backend over TLS):
the token reaches the server through GIT_ASKPASS and never appears in argv, a URL or output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fixtures_git import GitHttps, RepoWriter


def _watch_argv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    seen: list[list[str]] = []
    real = trio.run_process

    async def spy(command: list[str], **kwargs: Any) -> Any:
        seen.append(list(command))
        return await real(command, **kwargs)

    monkeypatch.setattr(trio, "run_process", spy)
    return seen


async def _cmdlines_while(service: Any) -> tuple[Any, list[bytes]]:
    """Run a sync and sample every process's command line while it runs."""
    cmdlines: list[bytes] = []
    result: list[Any] = []

    async def sync() -> None:
        result.append(await service.sync())

    async def sample() -> None:
        while not result:
            for pid in Path("/proc").iterdir():
                try:
                    cmdlines.append((pid / "cmdline").read_bytes())
                except OSError:
                    continue
            await trio.sleep(0.01)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sync)
            nursery.start_soon(sample)
    return result[0], cmdlines


async def test_token_from_config_clones_and_never_shows(
        git_https: GitHttps, config_repo: RepoWriter, make_inventory: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    argv = _watch_argv(monkeypatch)
    _, _, service = make_inventory(git_https.url(config_repo.bare), token=git_https.token,
                                   ca_file=str(git_https.ca_file))
    result, cmdlines = await _cmdlines_while(service)
    assert result.success, result.error
    assert result.commit_hash == config_repo.head()
    assert "x-access-token" in git_https.server.seen_users
    token = git_https.token
    assert argv and all(token not in part for command in argv for part in command)
    # The sampler saw git talking to the server, and never the token on a command line.
    assert any(f"127.0.0.1:{git_https.port}".encode() in line for line in cmdlines)
    assert all(token.encode() not in line for line in cmdlines)
    status = await service.status()
    assert token not in repr(status) and token not in repr(result.to_dict())


async def test_credentials_in_the_url_are_taken_out_of_it(
        git_https: GitHttps, config_repo: RepoWriter, make_inventory: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    argv = _watch_argv(monkeypatch)
    url = git_https.url(config_repo.bare, f"deploy:{git_https.token}@")
    _, _, service = make_inventory(url, ca_file=str(git_https.ca_file))
    with trio.fail_after(60):
        result = await service.sync()
    assert result.success, result.error
    assert git_https.server.seen_users[-1] == "deploy"
    assert all(git_https.token not in part for command in argv for part in command)
    status = await service.status()
    assert status["repository"] == git_https.url(config_repo.bare)


async def test_wrong_token_is_an_auth_failure(
        git_https: GitHttps, config_repo: RepoWriter, make_inventory: Any) -> None:
    denied = git_https.server.denied
    _, _, service = make_inventory(git_https.url(config_repo.bare), token="wrong-token-123",
                                   ca_file=str(git_https.ca_file))
    with trio.fail_after(60):
        result = await service.sync()
    assert result.error is not None
    assert (result.error.code, result.error.details["reason"]) == ("GIT_UNREACHABLE", "auth")
    assert "wrong-token-123" not in repr(result.to_dict())
    assert git_https.server.denied > denied


async def test_unknown_certificate_is_refused(
        git_https: GitHttps, config_repo: RepoWriter, make_inventory: Any) -> None:
    _, _, service = make_inventory(git_https.url(config_repo.bare), token=git_https.token)
    with trio.fail_after(60):
        result = await service.sync()
    assert result.error is not None
    assert result.error.details["reason"] == "tls"
