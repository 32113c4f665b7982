"""Key files: a symlink or a file owned by another user than the service's is refused, naming
the file, before it is read (SPEC §4 key rules, issue 15: a compromised ``linkops`` account
must not be able to point the service at another file)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key as rsa_key

from linkops.sandbox import _keypair
from linkops.ssh import SshKeyError
from linkops.ssh.keys import check_key_file, load_private_key
from tests.fixtures_core import require_root
from tests.fixtures_sandbox import SshEnv

NOBODY = 65534

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def private_key_file(path: Path, data: bytes | None = None) -> Path:
    path.write_bytes(data if data is not None else _keypair()[0])
    path.chmod(0o600)
    return path


def test_a_good_key_loads(tmp_path: Path) -> None:
    for name, key in (("ed", Ed25519PrivateKey.generate()),
                      ("ec", generate_private_key(SECP256R1())),
                      ("rsa", rsa_key(public_exponent=65537, key_size=2048))):
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
        loaded = load_private_key(private_key_file(tmp_path / name, data))
        assert loaded.get_name() in ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512",
                                     "ssh-rsa"), name


def test_symlink_to_a_good_key_is_refused_naming_the_link(tmp_path: Path) -> None:
    real = private_key_file(tmp_path / "real_key")
    link = tmp_path / "id_ed25519"
    link.symlink_to(real)
    for check in (check_key_file, load_private_key):
        with pytest.raises(SshKeyError) as info:
            check(link)
        assert str(link) in info.value.message and "symbolic link" in info.value.message
        assert info.value.code == "SSH_KEY_INVALID"


def test_symlink_to_a_system_file_and_a_dangling_link_are_refused(tmp_path: Path) -> None:
    to_passwd = tmp_path / "id_passwd"
    to_passwd.symlink_to("/etc/passwd")
    dangling = tmp_path / "id_dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for link in (to_passwd, dangling):
        with pytest.raises(SshKeyError) as info:
            load_private_key(link)
        assert str(link) in info.value.message and "symbolic link" in info.value.message


def test_key_owned_by_another_user_is_refused_naming_owner_and_fix(tmp_path: Path) -> None:
    require_root("chown a key to another user")
    key = private_key_file(tmp_path / "id_ed25519")
    os.chown(key, NOBODY, NOBODY)
    for check in (check_key_file, load_private_key):
        with pytest.raises(SshKeyError) as info:
            check(key)
        message = info.value.message
        assert str(key) in message and f"uid {NOBODY}" in message
        assert f"uid {os.geteuid()}" in message and f"chown {os.geteuid()} {key}" in message
        assert info.value.details["owner"] == NOBODY


def test_encrypted_and_garbage_keys_are_refused_naming_the_file(tmp_path: Path) -> None:
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"passphrase"))
    path = private_key_file(tmp_path / "enc", encrypted)
    with pytest.raises(SshKeyError) as info:
        load_private_key(path)
    assert str(path) in info.value.message and "encrypted" in info.value.message
    for name, data in (("garbage", b"not a key\n"), ("binary", os.urandom(512))):
        path = private_key_file(tmp_path / name, data)
        with pytest.raises(SshKeyError) as info:
            load_private_key(path)
        assert str(path) in info.value.message and "cannot be loaded" in info.value.message


async def test_connecting_with_a_symlinked_key_is_refused(ssh_env: SshEnv) -> None:
    key = ssh_env.keys_dir / "sandbox_ed25519"
    real = ssh_env.keys_dir.parent / "moved_key"
    shutil.move(key, real)
    key.symlink_to(real)
    manager = ssh_env.manager(max_retries=0)
    try:
        with trio.fail_after(20), pytest.raises(SshKeyError) as info:
            await manager.connect(ssh_env.links["sbx-01"], ssh_env.links)
        assert str(key) in info.value.message and "symbolic link" in info.value.message
    finally:
        key.unlink()
        shutil.move(real, key)
        await manager.aclose()


async def test_connecting_with_a_foreign_owned_key_is_refused(ssh_env: SshEnv) -> None:
    require_root("chown a key to another user")
    key = ssh_env.keys_dir / "sandbox_ed25519"
    os.chown(key, NOBODY, NOBODY)
    manager = ssh_env.manager(max_retries=0)
    try:
        with trio.fail_after(20), pytest.raises(SshKeyError) as info:
            await manager.connect(ssh_env.links["sbx-01"], ssh_env.links)
        assert str(key) in info.value.message and f"uid {NOBODY}" in info.value.message
    finally:
        os.chown(key, os.geteuid(), os.getegid())
        await manager.aclose()
