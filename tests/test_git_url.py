"""Repository URL checks: what git gets, what people see, what is refused — and that no
password survives into anything shown."""

from __future__ import annotations

import pytest

from linkops.errors import ValidationError
from linkops.inventory.remote import check_branch, parse_remote_url, strip_credentials


@pytest.mark.parametrize(("raw", "url", "protocol", "username", "password"), [
    ("https://git.example.com/ops/cfg.git", "https://git.example.com/ops/cfg.git", "https",
     None, None),
    ("https://deploy:s3cr%2Ft@git.example.com/ops/cfg.git",
     "https://git.example.com/ops/cfg.git", "https", "deploy", "s3cr/t"),
    ("https://tok-only@git.example.com:8443/cfg.git", "https://git.example.com:8443/cfg.git",
     "https", "tok-only", None),
    ("ssh://git@git.example.com:2222/ops/cfg.git", "ssh://git@git.example.com:2222/ops/cfg.git",
     "ssh", None, None),
    ("ssh://git:pw@git.example.com/ops/cfg.git", "ssh://git@git.example.com/ops/cfg.git",
     "ssh", None, None),
    ("git@github.com:ops/cfg.git", "git@github.com:ops/cfg.git", "ssh", None, None),
    ("file:///srv/git/cfg.git", "file:///srv/git/cfg.git", "file", None, None),
    ("/srv/git/cfg.git", "/srv/git/cfg.git", "file", None, None),
    ("  /srv/git/cfg.git\n", "/srv/git/cfg.git", "file", None, None),
])
def test_accepted_urls(raw: str, url: str, protocol: str, username: str | None,
                       password: str | None) -> None:
    remote = parse_remote_url(raw)
    assert (remote.url, remote.protocol, remote.username, remote.password) == (
        url, protocol, username, password)
    assert remote.display == url
    if password:
        assert password not in repr(remote)


@pytest.mark.parametrize("raw", [
    "ext::sh -c id", "ext::ssh", "fd::0", "-uhttps://x", "--upload-pack=id",
    "http://git.example.com/cfg.git", "git://git.example.com/cfg.git",
    "ftp://git.example.com/cfg.git", "relative/dir", "cfg.git",
    "ssh://-oProxyCommand=id/x", "ssh://-oProxyCommand=id@host/x", "https:///no-host",
    "https://git.example.com/a b", "https://git.example.com/\x00", "-oProxyCommand=id:x",
])
def test_refused_urls(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_remote_url(raw)
    assert info.value.code == "INVALID_REPOSITORY_URL"
    assert info.value.status == 400


@pytest.mark.parametrize("raw", [
    "https://u:pa ss@host/x", "https://u:p/a@ss@host/x", "http://u:hunter2@host/x",
    "https://u:hunter2@host/x y"])
def test_refusals_never_show_the_password(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_remote_url(raw)
    secret = raw.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    assert secret not in info.value.message
    assert secret not in repr(info.value.details)


def test_strip_credentials_in_free_text() -> None:
    text = ("fatal: unable to access 'https://bot:t0ken@git.example.com/x.git/': 403; "
            "also ssh://git:pw@h/r")
    assert strip_credentials(text) == ("fatal: unable to access 'https://git.example.com/x.git/"
                                       "': 403; also ssh://h/r")


@pytest.mark.parametrize("branch", ["main", "release/2026.1", "feature_x-1"])
def test_good_branches(branch: str) -> None:
    assert check_branch(branch) == branch


@pytest.mark.parametrize("branch", ["", "-f", "--upload-pack=x", "a..b", "x.lock", "a b",
                                    "/abs", "end/", "refs:x"])
def test_bad_branches(branch: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_branch(branch)
    assert info.value.code == "INVALID_BRANCH"
