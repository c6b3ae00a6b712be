"""The API application without a server: its OpenAPI document and its key check."""

from __future__ import annotations

import re
from typing import Any, cast

from pvc_apid.app import create_app, key_accepted, openapi_document
from pvc_common.store import ZkStore

KEYS = ("first-key-0123456789", "second-key-0123456789")


def test_the_openapi_document_lists_exactly_the_served_routes() -> None:
    app = create_app(cast(ZkStore, None), keys=KEYS)
    served = {
        (re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    document: dict[str, Any] = openapi_document()
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    # The document describes every route but itself and its human-readable page.
    assert described == served - {("/api/v1/openapi.json", "get"), ("/api/v1/docs", "get")}
    for path, ops in document["paths"].items():
        for operation in ops.values():
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == set(re.findall(r"{([a-z_]+)}", path))


def test_the_openapi_document_is_served_without_a_key() -> None:
    client = create_app(cast(ZkStore, None), keys=KEYS).test_client()
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200 and answer.json is not None
    assert answer.json["openapi"].startswith("3.")


def test_key_check() -> None:
    assert key_accepted(KEYS[1], KEYS)
    assert not key_accepted(None, KEYS)
    assert not key_accepted("", KEYS)
    assert not key_accepted(KEYS[0][:-1], KEYS)  # a prefix
    assert not key_accepted(KEYS[0] + "x", KEYS)
    assert not key_accepted(KEYS[0], ())


def test_the_human_readable_page_lists_every_endpoint() -> None:
    client = create_app(cast(ZkStore, None), keys=KEYS).test_client()
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    for path, operations in openapi_document()["paths"].items():
        assert f"<code>{path}</code>" in text
        assert all(f"<td>{method.upper()}</td>" in text for method in operations)
