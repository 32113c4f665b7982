"""SPEC §2 validation of a checkout: every error names file, line and entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from linkops.errors import ValidationError
from linkops.inventory.validate import SHEBANG_RE, load_inventory
from tests.fixtures_git import EXAMPLES

LINK = """links:
  vps-01:
    type: VPS
    host: 10.0.0.1
    port: {port}
    user: root
    enrollment:
      clientId: LINKOPS-8f3a2c6d-1b7e-4c7a-9c2a-3f1a7d2c9c10
"""
SCRIPTS = """scripts:
  hello:
    name: Hello
    description: Says hello
    path: scripts/hello.sh
    flags: [--name=REQUIRED, --loud]
"""


def make_checkout(tmp_path: Path, links: str, scripts: str = SCRIPTS,
                  script_text: str = "#!/bin/bash\necho hello\n") -> Path:
    root = tmp_path / "checkout"
    root.mkdir(parents=True)
    (root / "links.yaml").write_text(links)
    (root / "scripts.yaml").write_text(scripts)
    (root / "scripts").mkdir()
    (root / "scripts" / "hello.sh").write_text(script_text)
    return root


def problem(root: Path) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        load_inventory(root)
    return info.value


def test_examples_are_valid() -> None:
    inventory = load_inventory(EXAMPLES)
    assert len(inventory.links) == 7 and len(inventory.scripts) == 7
    assert inventory.links["vm-db-01"].ssh.proxyJump == "pve-office-01"
    required = [s for s in inventory.scripts.values() if any(
        f.endswith("=REQUIRED") for f in s.flags)]
    assert [s.id for s in required] == ["backup_config"]
    for script in inventory.scripts.values():
        assert SHEBANG_RE.match(script.content.splitlines()[0])


def test_port_error_reads_like_the_spec(tmp_path: Path) -> None:
    error = problem(make_checkout(tmp_path, LINK.format(port=70000)))
    assert error.message == "links.yaml:5: links.vps-01.port: must be an integer 1-65535"
    assert error.code == "VALIDATION_ERROR"
    assert error.details["file"] == "links.yaml"
    assert error.details["line"] == 5
    assert error.details["entry"] == "vps-01"
    assert error.details["field"] == "links.vps-01.port"


def test_wrong_type_is_not_coerced(tmp_path: Path) -> None:
    error = problem(make_checkout(tmp_path, LINK.format(port='"22"')))
    assert error.message == "links.yaml:5: links.vps-01.port: must be an integer"
    error = problem(make_checkout(tmp_path / "b", LINK.format(port="true")))
    assert "links.vps-01.port: must be an integer" in error.message


def test_missing_client_id_and_empty_enrollment(tmp_path: Path) -> None:
    text = LINK.format(port=22).replace("clientId: ", "required: true\n      clientIdd: ")
    error = problem(make_checkout(tmp_path / "a", text))
    fields = {(p["field"], p["line"], p["message"]) for p in error.details["problems"]}
    assert fields == {("links.vps-01.enrollment.clientId", 7, "required field missing"),
                      ("links.vps-01.enrollment.clientIdd", 9, "unknown field")}
    text = "\n".join(LINK.format(port=22).splitlines()[:-1]) + "\n"
    error = problem(make_checkout(tmp_path / "b", text))
    assert error.message == "links.yaml:7: links.vps-01.enrollment: must be a mapping"


@pytest.mark.parametrize(("field", "line"), [("type", 2), ("host", 2), ("port", 2), ("user", 2)])
def test_missing_required_field_is_named(tmp_path: Path, field: str, line: int) -> None:
    text = "\n".join(line for line in LINK.format(port=22).splitlines()
                      if not line.strip().startswith(f"{field}:")) + "\n"
    error = problem(make_checkout(tmp_path, text))
    assert field in error.details["field"]
    assert "required field missing" in error.message
    assert error.details["line"] == line


def test_unknown_fields_and_list_items(tmp_path: Path) -> None:
    text = LINK.format(port=22) + "    proxyjump: vps-02\n    tags: [a, 3]\n"
    error = problem(make_checkout(tmp_path, text))
    fields = {(p["field"], p["line"]) for p in error.details["problems"]}
    assert ("links.vps-01.proxyjump", 9) in fields
    assert ("links.vps-01.tags[1]", 10) in fields
    assert error.details["problem_count"] == 2


@pytest.mark.parametrize(("host", "user"), [
    ("-oProxyCommand=x", "root"),
    ("host name", "root"),
    ("'a\\tb'", "root"),
    ("10.0.0.1", "-l"),
    ("10.0.0.1", "'ro ot'"),
    ("10.0.0.1", "'a\\x01'"),
])
def test_hosts_and_users_cannot_smuggle_options(tmp_path: Path, host: str, user: str) -> None:
    text = LINK.format(port=22).replace("10.0.0.1", host, 1).replace("user: root",
                                                                     f"user: {user}")
    error = problem(make_checkout(tmp_path, text))
    assert error.details["entry"] == "vps-01"
    assert error.details["field"] in ("links.vps-01.host", "links.vps-01.user")


def test_proxy_jump_unknown_and_cycle(tmp_path: Path) -> None:
    two = LINK.format(port=22) + (
        "    ssh:\n      proxyJump: vps-02\n"
        "  vps-02:\n    type: VM\n    host: h2\n    port: 22\n    user: u\n"
        "    enrollment: {clientId: C2}\n    ssh: {proxyJump: vps-01}\n")
    error = problem(make_checkout(tmp_path, two))
    assert "proxyJump cycle: vps-01 -> vps-02 -> vps-01" in error.message
    assert error.details["line"] == 10
    unknown = LINK.format(port=22) + "    ssh:\n      proxyJump: nowhere\n"
    error = problem(make_checkout(tmp_path / "u", unknown))
    assert error.message == "links.yaml:10: links.vps-01.ssh.proxyJump: unknown link 'nowhere'"
    self_jump = LINK.format(port=22) + "    ssh:\n      proxyJump: vps-01\n"
    assert "cycle" in problem(make_checkout(tmp_path / "s", self_jump)).message


@pytest.mark.parametrize("bad_id", ["vps 01", "vps/01", "ü", "x" * 65, "'a;b'", "-rf", "..",
                                    ".hidden", "_x"])
def test_ids_use_a_safe_charset(tmp_path: Path, bad_id: str) -> None:
    error = problem(make_checkout(tmp_path, LINK.format(port=22).replace("vps-01", bad_id)))
    assert "id must be" in error.message
    assert error.details["line"] == 2


@pytest.mark.parametrize("flag", ["-x", "--", '"--a b"', "x", '"--bad name=1"', '"--x=\\x01"',
                                  "--ok"])
def test_flags_must_look_like_long_options(tmp_path: Path, flag: str) -> None:
    scripts = SCRIPTS.replace("[--name=REQUIRED, --loud]", f"[--ok, {flag}]")
    error = problem(make_checkout(tmp_path, LINK.format(port=22), scripts))
    assert error.details["field"] == "scripts.hello.flags[1]"
    assert error.details["line"] == 6


@pytest.mark.parametrize("line", [
    "#!/bin/bash", "#!/usr/bin/env bash", "#!/bin/bash -e", "#!/bin/bash -eu -o",
    "#! /bin/bash", "#!/usr/bin/bash --norc", "#!/bin/bash\r"])
def test_bash_shebangs_are_accepted(tmp_path: Path, line: str) -> None:
    root = make_checkout(tmp_path, LINK.format(port=22), script_text=f"{line}\necho hi\n")
    script = load_inventory(root).scripts["hello"]
    assert script.content.startswith(line)
    assert len(script.sha256) == 64


@pytest.mark.parametrize("line", [
    "#!/bin/sh", "#!/usr/bin/env python3", "echo no shebang", "", "#!/bin/bashx",
    "#!/usr/bin/env zsh", "#!/bin/bash; rm -rf /", "#!/tmp/bash"])
def test_other_interpreters_are_non_bash(tmp_path: Path, line: str) -> None:
    root = make_checkout(tmp_path, LINK.format(port=22), script_text=f"{line}\necho hi\n")
    error = problem(root)
    assert error.code == "NON_BASH_SCRIPT"
    assert error.status == 400
    assert error.message.startswith("scripts.yaml:5: scripts.hello.path: scripts/hello.sh: ")
    assert error.details["entry"] == "hello"


def test_script_must_be_a_regular_file_inside(tmp_path: Path) -> None:
    root = make_checkout(tmp_path, LINK.format(port=22))
    (root / "scripts" / "hello.sh").unlink()
    (root / "scripts" / "hello.sh").mkdir()
    assert "not a regular file" in problem(root).message
    shutil.rmtree(root / "scripts" / "hello.sh")
    assert "file not found" in problem(root).message
    (root / "scripts" / "hello.sh").symlink_to(root / ".git-ish")
    assert "file not found" in problem(root).message
    (root / "scripts" / "hello.sh").unlink()
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("#!/bin/bash\n")
    (root / "scripts" / "hello.sh").symlink_to("../.git/config")
    assert "into the .git directory" in problem(root).message


def test_a_symlink_inside_the_repository_is_fine(tmp_path: Path) -> None:
    root = make_checkout(tmp_path, LINK.format(port=22))
    (root / "scripts" / "real.sh").write_text("#!/bin/bash\necho real\n")
    (root / "scripts" / "hello.sh").unlink()
    (root / "scripts" / "hello.sh").symlink_to("real.sh")
    assert load_inventory(root).scripts["hello"].content == "#!/bin/bash\necho real\n"


def test_problems_of_both_files_are_reported_together(tmp_path: Path) -> None:
    root = make_checkout(tmp_path, LINK.format(port=0), SCRIPTS.replace("name: Hello\n", ""))
    error = problem(root)
    files = [p["file"] for p in error.details["problems"]]
    assert files == ["links.yaml", "scripts.yaml"]
    assert "(and 1 more problem)" in error.message


@pytest.mark.parametrize(("links", "message"), [
    ("", "must be a mapping with a top-level 'links:' key"),
    ("hosts: {}\n", "must be a mapping with a top-level 'links:' key"),
    ("links: [a, b]\n", "'links' must be a mapping of id to entry"),
    ("links: {}\nextra: 1\n", "unknown top-level key"),
    ("links:\n  a: 5\n", "must be a mapping"),
])
def test_file_shapes(tmp_path: Path, links: str, message: str) -> None:
    assert message in problem(make_checkout(tmp_path, links)).message


def test_empty_inventory_is_valid(tmp_path: Path) -> None:
    inventory = load_inventory(make_checkout(tmp_path, "links:\n", "scripts: {}\n"))
    assert inventory.links == {} and inventory.scripts == {}
