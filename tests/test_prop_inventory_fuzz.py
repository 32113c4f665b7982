"""Hostile repository content, fuzzed: arbitrary text and arbitrary JSON (JSON is YAML 1.2)
committed as links.yaml / scripts.yaml into a real Git repository and synced. Every sync ends
in success or in a structured 400 naming the file and the line, the previous inventory stays
active, and nothing is ever an unexpected error (SPEC §10.1 / §2; property 4's failure half)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from linkops.db import Database
from linkops.inventory import InventoryService
from tests.fixtures_git import RepoWriter
from tests.strategies import PROP, call, run_property

FILES = ("links.yaml", "scripts.yaml")
FUZZ = settings(PROP, max_examples=40)

# Any character, surrogates included (they reach the loader as \uXXXX escapes in JSON).
any_char = st.characters(codec=None, exclude_categories=())
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(any_char, max_size=12),
    st.sampled_from(["\ud83d\udc4b", "\ud83d", "\udc4b", "yes", "0x1F", "1e400", "~", ""]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(any_char, max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)
LINK = {"type": "VPS", "host": "h.example", "port": 22, "user": "u",
        "enrollment": {"clientId": "LINKOPS-1"}}
SCRIPT = {"name": "N", "description": "D", "path": "scripts/system_info.sh"}


@st.composite
def json_documents(draw: st.DrawFn, file: str) -> Any:
    """Arbitrary JSON at every depth the loader looks at: the whole document, the mapping
    under the top key, one entry, or one field of an otherwise valid entry."""
    top = file.removesuffix(".yaml")
    depth = draw(st.sampled_from(["document", "entries", "entry", "field"]))
    value = draw(json_values)
    if depth == "document":
        return value
    if depth == "entries":
        return {top: value}
    entry_id = draw(st.text(any_char, min_size=1, max_size=10))
    if depth == "entry":
        return {top: {entry_id: value}}
    base = dict(LINK if top == "links" else SCRIPT)
    field = draw(st.sampled_from([*base, "name", "tags", "ssh", "metadata", "flags"]))
    base[field] = value
    return {top: {entry_id: base}}


@st.composite
def repository_files(draw: st.DrawFn) -> tuple[str, bytes]:
    file = draw(st.sampled_from(FILES))
    kind = draw(st.sampled_from(["text", "json", "json-unicode"]))
    if kind == "text":
        return file, draw(st.text(max_size=200)).encode("utf-8")
    document = draw(json_documents(file))
    # ensure_ascii: non-BMP characters become surrogate-pair escapes, as JSON writers do.
    text = json.dumps(document, ensure_ascii=(kind == "json"))
    return file, text.encode("utf-8", "surrogatepass") if kind == "json" else \
        text.encode("utf-8", "backslashreplace")


def _rows(db: Database) -> Any:
    return db.read_sync(lambda c: (
        [dict(r) for r in c.execute("SELECT * FROM machines ORDER BY id")],
        [dict(r) for r in c.execute("SELECT * FROM scripts ORDER BY id")]))


async def test_fuzzed_repository_content_syncs_or_names_file_and_line(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    _, db, service = inventory
    first = await service.sync()
    assert first.success, first.error
    originals = {name: (config_repo.work / name).read_bytes() for name in FILES}

    @FUZZ
    @given(repository_files())
    def prop(generated: tuple[str, bytes]) -> None:
        file, content = generated
        before = _rows(db)
        for name, original in originals.items():
            config_repo.write(name, content if name == file else original)
        config_repo.commit_and_push("fuzzed")
        result = call(service.sync)
        if result.success:
            return
        error = result.error
        assert error is not None
        assert error.status == 400, (error.code, error.message)
        assert error.code in {"YAML_PARSE_ERROR", "VALIDATION_ERROR"}, error.code
        assert error.details["file"] == file, error.details
        assert isinstance(error.details["line"], int), error.details
        assert _rows(db) == before, "a failed sync changed the active inventory"

    await run_property(prop, timeout=600)


async def test_surrogate_pair_in_scripts_yaml_syncs_as_its_character(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    """The report's case: ``emoji: "\\ud83d\\udc4b"`` (how JSON writers spell 👋) syncs."""
    _, _, service = inventory
    config_repo.replace("scripts.yaml", 'emoji: "🖥️"', 'emoji: "\\ud83d\\udc4b"')
    config_repo.commit_and_push("emoji as a surrogate pair")
    result = await service.sync()
    assert result.success, result.error
    assert (await service.get_script("system_info"))["emoji"] == "\U0001f44b"


async def test_lone_surrogate_in_scripts_yaml_names_file_and_line(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    _, db, service = inventory
    assert (await service.sync()).success
    before = _rows(db)
    line = config_repo.read("scripts.yaml").splitlines().index('    emoji: "🖥️"') + 1
    config_repo.replace("scripts.yaml", 'emoji: "🖥️"', 'emoji: "\\ud83d"')
    config_repo.commit_and_push("a lone surrogate")
    result = await service.sync()
    assert not result.success and result.error is not None
    assert result.error.code == "YAML_PARSE_ERROR"
    assert (result.error.details["file"], result.error.details["line"]) == ("scripts.yaml", line)
    assert "surrogate" in result.error.message
    assert _rows(db) == before
