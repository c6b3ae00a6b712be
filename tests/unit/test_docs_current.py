"""The generated reference documents match the code they are generated from."""

from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pvc_common import schema

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    """Import ``docs/generate.py`` by path (``docs`` is not a package)."""
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


@pytest.mark.parametrize("name", sorted(GENERATOR.OUTPUTS))
def test_document_is_current(name: str) -> None:
    path = ROOT / name
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    expected = GENERATOR.OUTPUTS[name]()
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                current.splitlines(keepends=True), expected.splitlines(keepends=True), n=1
            )
        )
        pytest.fail(f"{name} is out of date: run .venv/bin/python docs/generate.py\n{diff[:3000]}")


def test_rendering_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment variables and the terminal size must not leak into the documents."""
    expected = GENERATOR.render_cli()
    monkeypatch.setenv("PVC_ZOOKEEPER", "elsewhere:2181")
    monkeypatch.setenv("PVC_TIMEOUT", "99")
    monkeypatch.setenv("COLUMNS", "40")
    assert GENERATOR.render_cli() == expected


def all_fields() -> list[tuple[str, str]]:
    """(tuple name, key) for every field of every ``*_FIELDS`` tuple of the schema."""
    found = []
    for name in sorted(dir(schema)):
        value: Any = getattr(schema, name)
        if name.endswith("_FIELDS") and isinstance(value, tuple):
            found += [(name, field.key) for field in value if isinstance(field, schema.Field)]
    return found


def test_every_field_is_found() -> None:
    names = {name for name, _ in all_fields()}
    assert {"DOMAIN_FIELDS", "NODE_FIELDS", "NETWORK_FIELDS", "CONFIG_FIELDS"} <= names


@pytest.mark.parametrize(("fields", "key"), all_fields())
def test_schema_doc_lists_field(fields: str, key: str) -> None:
    text = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    row = re.compile(rf"^\| `{re.escape(key)}` \|", re.MULTILINE)
    assert row.search(text), f"docs/schema.md has no table row for {fields} key {key!r}"


@pytest.mark.parametrize("name", sorted(n for n in GENERATOR.OUTPUTS if n.startswith("docs/man/")))
def test_manual_page_formats_without_warnings(name: str) -> None:
    import shutil
    import subprocess

    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed: the manual pages cannot be formatted here")
    result = subprocess.run(
        [groff, "-man", "-ww", "-z", str(ROOT / name)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    title = name.rsplit("/", 1)[1].split(".")[0].upper()
    assert (ROOT / name).read_text().startswith(f".TH {title} ")
