"""The strict tree audit (pvc_common.audit) on trees built in memory."""

from __future__ import annotations

from typing import Any

import pytest

from pvc_common import schema
from pvc_common.audit import audit_tree

UUID_A = "00000000-0000-4000-8000-00000000000a"
UUID_B = "00000000-0000-4000-8000-00000000000b"


def _xml(name: str, uuid: str) -> str:
    return (
        f"<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid>"
        "<memory unit='MiB'>512</memory><vcpu>1</vcpu></domain>"
    )


def _entity(
    tree: dict[str, bytes], path: str, data: str, fields: tuple[schema.Field[Any], ...]
) -> None:
    tree[path] = data.encode()
    for field in fields:
        tree[f"{path}/{field.key}"] = field.encode(field.default)


def good_tree() -> dict[str, bytes]:
    """A tree as the writers leave it: two nodes, a network and two VMs."""
    tree: dict[str, bytes] = {
        schema.SCHEMA_VERSION_PATH: schema.encode_schema_version(),
        schema.config_key_path("migration_target_selector"): b"mem",
    }
    for node in ("hv1", "hv2"):
        _entity(tree, schema.node_path(node), "hypervisor", schema.NODE_FIELDS)
    _entity(tree, schema.network_path(100), "a bridge", schema.NETWORK_FIELDS)
    for name, uuid in (("alpha", UUID_A), ("beta", UUID_B)):
        _entity(tree, schema.domain_path(uuid), name, schema.DOMAIN_FIELDS)
        tree[schema.domain_key_path(uuid, "xml")] = _xml(name, uuid).encode()
        tree[schema.domain_key_path(uuid, "node")] = b"hv1"
    tree[schema.domain_key_path(UUID_A, "node_limit")] = b"hv1,hv2"
    return tree


def test_a_tree_as_written_has_no_problems() -> None:
    report = audit_tree(good_tree())
    assert report.ok, report.problems
    assert (report.vms, report.nodes, report.networks) == (2, 2, 1)
    assert report.as_dict()["checked"] == {"vms": 2, "nodes": 2, "networks": 1}


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        (schema.domain_key_path(UUID_A, "state"), b"running", "'running' is not one of start"),
        (schema.domain_key_path(UUID_A, "node_selector"), b"fastest", "is not one of mem"),
        (schema.domain_key_path(UUID_A, "node_autostart"), b"true", "'true' is not one of True"),
        (schema.domain_key_path(UUID_A, "migration_method"), b"teleport", "not one of live"),
        (schema.domain_key_path(UUID_A, "request"), b"-1", "-1 is below 0"),
        (schema.domain_key_path(UUID_A, "confirmed"), b"two", "'two' is not an integer"),
        (schema.domain_key_path(UUID_A, "console"), b"[1]", "is JSON but not an object"),
        (schema.domain_key_path(UUID_A, "console"), b"{", "is not valid JSON"),
        (schema.domain_key_path(UUID_A, "node"), b"hv9", "names unknown node 'hv9'"),
        (schema.domain_key_path(UUID_A, "lastnode"), b"hv9", "names unknown node 'hv9'"),
        (schema.domain_key_path(UUID_A, "node_limit"), b"hv1,hv7", "unknown node(s) hv7"),
        (schema.domain_key_path(UUID_A, "xml"), b"<domain>", "does not parse"),
        (schema.domain_key_path(UUID_A, "xml"), _xml("alpha", UUID_B).encode(), "is for UUID"),
        (schema.domain_key_path(UUID_A, "xml"), _xml("other", UUID_A).encode(), "'other'"),
        (schema.domain_key_path(UUID_A, "xml"), b"\xff\xfe", "is not UTF-8 text"),
        (schema.domain_path(UUID_B), b"alpha", "has the name 'alpha' of VM"),
        (schema.domain_path(UUID_B), b"", "has no name"),
        (schema.domain_path(UUID_A) + "/colour", b"blue", "is not a key of the schema"),
        (schema.node_key_path("hv1", "daemonstate"), b"sleeping", "is not one of init"),
        (schema.node_key_path("hv1", "domainstate"), b"drained", "is not one of ready"),
        (schema.node_key_path("hv1", "memfree"), b"lots", "is not an integer"),
        (schema.node_key_path("hv1", "cpuload"), b"high", "is not a number"),
        (schema.node_key_path("hv1", "runningdomains"), b"abc", "not UUIDs: abc"),
        (schema.node_key_path("hv1", "maintenance"), b"null", "not an object"),
        (schema.node_path("hv1"), b"toaster", "is not one of coordinator"),
        (schema.network_key_path(100, "nettype"), b"wifi", "is not one of bridged"),
        (schema.config_key_path("migration_target_selector"), b"none", "is not one of mem"),
        (schema.CONFIG_PATH + "/colour", b"blue", "is not a configuration key"),
        (schema.SCHEMA_VERSION_PATH, b"2", "is '2', not this program's"),
    ],
)
def test_each_malformed_value_is_reported_at_its_path(
    path: str, data: bytes, expected: str
) -> None:
    tree = good_tree()
    tree[path] = data
    problems = audit_tree(tree).problems
    assert any(p.path == path and expected in p.message for p in problems), problems
    # Nothing outside the damaged entity is blamed.
    entity = "/".join(path.split("/")[:3])
    assert all(p.path.startswith(entity) for p in problems), problems


def test_missing_keys_and_bad_names_are_reported() -> None:
    tree = good_tree()
    del tree[schema.domain_key_path(UUID_B, "request")]
    del tree[schema.SCHEMA_VERSION_PATH]
    tree["/nodes/-bad"] = b"hypervisor"
    tree["/networks/0100"] = b""
    tree["/domains/NOT-A-UUID"] = b"gamma"
    found = {str(problem) for problem in audit_tree(tree).problems}
    assert f"{schema.domain_key_path(UUID_B, 'request')}: is missing" in found
    assert f"{schema.SCHEMA_VERSION_PATH}: is missing" in found
    assert "/nodes/-bad: is not a valid node name" in found
    assert "/networks/0100: is not a valid VNI" in found
    assert "/domains/NOT-A-UUID: is not a canonical UUID" in found
    # Every key of the bare entities is missing too, each reported at its own path.
    assert "/nodes/-bad/daemonstate: is missing" in found
    assert "/domains/NOT-A-UUID/xml: is missing" in found
