"""The known_hosts store and host-key decisions (file format, policies, pins), no network."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
import pytest

from linkops.sandbox import _keypair
from linkops.ssh.errors import HostKeyMismatchError, HostKeyUnknownError
from linkops.ssh.keys import HostKeyPin, fingerprint, public_key_line
from linkops.ssh.known_hosts import KnownHosts


def _key() -> paramiko.PKey:
    _private, public = _keypair()
    kind, b64 = public.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(b64))


def test_accept_new_records_then_knows(tmp_path: Path) -> None:
    store = KnownHosts(tmp_path / "sub" / "known_hosts", "accept-new")
    key = _key()
    assert store.verify("10.0.0.5", 22, key) == "added"
    assert store.verify("127.0.0.1", 2222, key) == "added"
    assert store.verify("10.0.0.5", 22, key) == "known"
    text = (tmp_path / "sub" / "known_hosts").read_text()
    assert text.splitlines() == [f"10.0.0.5 {public_key_line(key)}",
                                 f"[127.0.0.1]:2222 {public_key_line(key)}"]
    assert (tmp_path / "sub" / "known_hosts").stat().st_mode & 0o777 == 0o600


def test_strict_refuses_unknown_and_writes_nothing(tmp_path: Path) -> None:
    store = KnownHosts(tmp_path / "known_hosts", "strict")
    with pytest.raises(HostKeyUnknownError):
        store.verify("h", 22, _key(), target="vps-01")
    assert not (tmp_path / "known_hosts").exists()


@pytest.mark.parametrize("policy", ["accept-new", "strict"])
def test_changed_key_always_refused(tmp_path: Path, policy: str) -> None:
    old, new = _key(), _key()
    path = tmp_path / "known_hosts"
    path.write_text(f"[h]:2200 {public_key_line(old)}\n")
    with pytest.raises(HostKeyMismatchError) as info:
        KnownHosts(path, policy).verify("h", 2200, new, target="vps-01")
    assert info.value.details["expected"] == [fingerprint(old)]
    assert info.value.details["offered"] == fingerprint(new)
    assert path.read_text() == f"[h]:2200 {public_key_line(old)}\n"


def test_hashed_patterns_negation_and_garbage(tmp_path: Path) -> None:
    a, b, c = _key(), _key(), _key()
    hashed = paramiko.HostKeys.hash_host("secret.example")
    path = tmp_path / "known_hosts"
    path.write_text("\n".join([
        "# comment", "", "garbage line", "x ssh-ed25519 !!!notbase64",
        f"@cert-authority *.example {public_key_line(c)}",
        f"{hashed} {public_key_line(a)}",
        f"*.lan,!bad.lan {public_key_line(b)}",
    ]) + "\n")
    store = KnownHosts(path, "strict")
    assert store.verify("secret.example", 22, a) == "known"
    assert store.verify("web.lan", 22, b) == "known"
    with pytest.raises(HostKeyUnknownError):
        store.verify("bad.lan", 22, b)  # negated: not covered, and strict
    with pytest.raises(HostKeyUnknownError):
        store.verify("ca.example", 22, c)  # certificate authorities are not trusted
    with pytest.raises(HostKeyMismatchError):
        store.verify("secret.example", 22, b)


def test_revoked_key_is_refused_even_for_a_new_host(tmp_path: Path) -> None:
    bad = _key()
    path = tmp_path / "known_hosts"
    path.write_text(f"@revoked * {public_key_line(bad)}\n")
    with pytest.raises(HostKeyMismatchError, match="revoked"):
        KnownHosts(path, "accept-new").verify("anything", 22, bad)


def test_file_edits_are_seen_without_restart(tmp_path: Path) -> None:
    old, new = _key(), _key()
    path = tmp_path / "known_hosts"
    path.write_text(f"h {public_key_line(old)}\n")
    store = KnownHosts(path, "strict")
    with pytest.raises(HostKeyMismatchError):
        store.verify("h", 22, new)
    path.write_text(f"h {public_key_line(new)}\n")  # the operator accepted the change
    assert store.verify("h", 22, new) == "known"


def test_pins_by_key_and_fingerprint() -> None:
    key, other = _key(), _key()
    for pin_text in (public_key_line(key), public_key_line(key) + " comment",
                     fingerprint(key), fingerprint(key) + "="):
        pin = HostKeyPin.parse(pin_text)
        assert pin.matches(key) and not pin.matches(other)
    for bad in ("", "SHA256:!!", "SHA256:AAAA", "ssh-ed25519", "ssh-ed25519 notbase64!"):
        with pytest.raises(ValueError):
            HostKeyPin.parse(bad)


def test_pin_overrides_known_hosts(tmp_path: Path) -> None:
    key, other = _key(), _key()
    path = tmp_path / "known_hosts"
    path.write_text(f"h {public_key_line(other)}\n")
    store = KnownHosts(path, "strict")
    assert store.verify("h", 22, key, pin=HostKeyPin.parse(fingerprint(key))) == "pinned"
    with pytest.raises(HostKeyMismatchError, match="pins"):
        store.verify("h", 22, other, pin=HostKeyPin.parse(fingerprint(key)))
    assert path.read_text() == f"h {public_key_line(other)}\n"
