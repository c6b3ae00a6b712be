"""The schema module: codecs keep the classic string formats; only the store imports kazoo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pvc_common import schema
from pvc_common.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("codec", "value", "stored"),
    [
        (schema.BOOL, True, b"True"),
        (schema.BOOL, False, b"False"),
        (schema.COMMA_LIST, ("hv1", "hv2"), b"hv1,hv2"),
        (schema.COMMA_LIST, (), b""),
        (schema.SPACE_LIST, ("a", "b"), b"a b"),
        (schema.INT, 4096, b"4096"),
        (schema.FLOAT, 0.5, b"0.50"),
        (schema.TEXT, "héllo", "héllo".encode()),
    ],
)
def test_codecs_round_trip_in_classic_formats(
    codec: schema.Codec[object], value: object, stored: bytes
) -> None:
    assert codec.encode(value) == stored
    assert codec.decode(stored) == value


def test_decoding_is_lenient_with_other_tools_spellings() -> None:
    assert schema.BOOL.decode(b"true") is True
    assert schema.COMMA_LIST.decode(b" hv1, ,hv2 ") == ("hv1", "hv2")
    assert schema.INT.decode(b"garbage") == 0
    assert schema.DOMAIN_FIELD["node_selector"].decode(None) == "none"


def test_paths_come_from_known_keys_only() -> None:
    assert schema.domain_key_path("u", "node_limit") == "/domains/u/node_limit"
    assert schema.node_key_path("hv1", "keepalive") == "/nodes/hv1/keepalive"
    with pytest.raises(KeyError):
        schema.domain_key_path("u", "no_such_key")


@pytest.mark.parametrize("bad", ["", "-hv", "hv 1", "hv/1", "x" * 64])
def test_invalid_node_names(bad: str) -> None:
    with pytest.raises(InvalidInput):
        schema.validate_node_name(bad)


@pytest.mark.parametrize(("vni", "ok"), [(1, True), (16777215, True), (0, False), ("x", False)])
def test_vni_range(vni: object, ok: bool) -> None:
    if ok:
        assert schema.validate_vni(vni) == int(vni)  # type: ignore[call-overload]
    else:
        with pytest.raises(InvalidInput):
            schema.validate_vni(vni)  # type: ignore[arg-type]


def test_only_the_store_adapter_imports_kazoo() -> None:
    importers = [
        path.relative_to(REPO).as_posix()
        for folder in ("common", "client-cli", "node-daemon", "api-daemon")
        for path in (REPO / folder).rglob("*.py")
        if re.search(r"^\s*(from|import)\s+kazoo", path.read_text(), re.MULTILINE)
    ]
    assert importers == ["common/pvc_common/store.py"]


def test_no_path_strings_outside_the_schema_module() -> None:
    offenders = [
        path.name
        for path in (REPO / "common" / "pvc_common").glob("*.py")
        if path.name != "schema.py"
        and re.search(r"[\"']/(domains|nodes|networks|config)\b", path.read_text())
    ]
    assert offenders == []
