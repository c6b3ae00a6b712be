"""``pvc cluster init`` and ``pvc cluster status``, and the schema check every command makes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvc_common import schema
from pvc_common.mutations import update_vm
from pvc_common.network_ops import add_network
from pvc_common.snapshot import find_vm
from pvc_common.store import Create, Delete, SetData, ZkStore
from pvc_common.vm_ops import define_vm
from tests.integration.conftest import PvcRunner, domain_xml, parse_fields, vm_uuid

NOT_INITIALISED = "Error: the cluster is not initialised: run 'pvc cluster init'"


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICOLOR_FORCE", raising=False)


@pytest.fixture
def fresh(store: ZkStore, zk_hosts: str) -> PvcRunner:
    """``pvc`` against this test's empty, uninitialised tree."""
    assert store.children("/") == []
    return PvcRunner(zk_hosts)


def tree(store: ZkStore) -> dict[str, tuple[bytes, int]]:
    """Every znode of the tree with its data and version."""
    paths = store.descendants("/")
    reads = store.read_many(paths)
    return {
        path: (read.data, read.version) for path, read in zip(paths, reads, strict=True) if read
    }


def define(pvc: PvcRunner, tmp_path: Path, name: str, number: int) -> None:
    path = tmp_path / f"{name}.xml"
    path.write_text(domain_xml(name, vm_uuid(number)))
    pvc("vm", "define", str(path))


def status_json(pvc: PvcRunner) -> dict[str, Any]:
    result = pvc("cluster", "status", "-o", "json")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --------------------------------------------------------------------------- init


def test_init_creates_the_tree_on_an_empty_tree(fresh: PvcRunner, store: ZkStore) -> None:
    result = fresh("cluster", "init")

    assert result.stdout == "Cluster initialised\n"
    assert result.stderr == ""
    assert tree(store) == {
        "/schema": (b"", 0),
        "/schema/version": (str(schema.SCHEMA_VERSION).encode(), 0),
        "/config": (b"", 0),
        "/config/migration_target_selector": (b"mem", 0),
        "/domains": (b"", 0),
        "/nodes": (b"", 0),
        "/networks": (b"", 0),
        "/liveness": (b"", 0),
        "/locks": (b"", 0),
        "/primary_node": (b"", 0),
    }
    # The tree is usable at once.
    status = status_json(fresh)
    assert status["schema_version"] == schema.SCHEMA_VERSION
    assert status["nodes"]["total"] == status["vms"]["total"] == status["networks"] == 0


def test_init_creates_a_missing_chroot_and_other_commands_ask_for_init(
    zk_hosts: str,
) -> None:
    hosts = f"{zk_hosts}/pvc/prod"  # zk_hosts is a chroot already: nest a missing one in it
    absent = PvcRunner(hosts)
    status = absent("cluster", "status", expect=5)
    assert status.output == f"{NOT_INITIALISED}\n"  # one line, no kazoo warning
    result = absent("cluster", "init")
    assert (result.stdout, result.stderr) == ("Cluster initialised\n", "")
    assert absent("cluster", "check").stdout.startswith("No problems found")
    with ZkStore(zk_hosts) as parent:
        assert parent.exists("/pvc/prod/schema/version")


def test_second_init_is_refused_and_changes_nothing(
    pvc: PvcRunner, cluster: ZkStore, tmp_path: Path
) -> None:
    define(pvc, tmp_path, "web1", 1)
    pvc("network", "add", "100")
    before = tree(cluster)

    result = pvc("cluster", "init", expect=5)

    assert result.stderr == (
        "Error: a cluster already exists here: give --yes to wipe it and start again\n"
    )
    assert result.stdout == ""
    assert tree(cluster) == before
    assert find_vm(cluster, "web1").uuid == vm_uuid(1)
    assert cluster.children(schema.NODES_PATH) == ["hv1", "hv2", "hv3"]


def test_init_is_refused_on_a_tree_with_nodes_but_no_schema_version(
    fresh: PvcRunner, store: ZkStore
) -> None:
    # Written by something else (or an older tool): nodes exist but no /schema/version.
    store.commit([Create("/nodes"), Create("/nodes/hv1", b"hypervisor")])

    fresh("cluster", "init", expect=5)

    assert tree(store) == {"/nodes": (b"", 0), "/nodes/hv1": (b"hypervisor", 0)}


def test_init_yes_wipes_everything_and_starts_again(
    pvc: PvcRunner, cluster: ZkStore, tmp_path: Path
) -> None:
    define(pvc, tmp_path, "web1", 1)
    define(pvc, tmp_path, "web2", 2)
    pvc("network", "add", "100", "-d", "prod")
    pvc("node", "flush", "hv1")
    cluster.commit(
        [
            SetData(schema.config_key_path("migration_target_selector"), b"load"),
            SetData(schema.PRIMARY_NODE_PATH, b"hv1"),
        ]
    )

    result = pvc("cluster", "init", "--yes")

    assert result.stdout == "Cluster initialised\n"
    for root in (schema.DOMAINS_PATH, schema.NODES_PATH, schema.NETWORKS_PATH):
        assert cluster.children(root) == [], root
    assert cluster.get(schema.SCHEMA_VERSION_PATH).data == str(schema.SCHEMA_VERSION).encode()
    assert cluster.get(schema.config_key_path("migration_target_selector")).data == b"mem"
    assert cluster.get(schema.PRIMARY_NODE_PATH).data == b""
    assert set(tree(cluster)) == {
        "/schema",
        "/schema/version",
        "/config",
        "/config/migration_target_selector",
        "/domains",
        "/nodes",
        "/networks",
        "/liveness",
        "/locks",
        "/primary_node",
    }
    assert json.loads(pvc("vm", "list", "-o", "json").stdout) == []
    assert json.loads(pvc("node", "list", "-o", "json").stdout) == []
    # The new cluster is protected like any other.
    pvc("cluster", "init", expect=5)


# --------------------------------------------------------------------------- schema checks


#: Commands that must check the schema version before reading or writing anything. Network
#: 100 exists in the newer-schema tree (with a VM on it, hence --force); 200 does not.
SCHEMA_GUARDED_COMMANDS = pytest.mark.parametrize(
    "args",
    [
        ("cluster", "status"),
        ("node", "list"),
        ("node", "info", "hv1"),
        ("node", "flush", "hv1"),
        ("node", "ready", "hv1"),
        ("network", "list"),
        ("network", "add", "200"),
        ("network", "info", "100"),
        ("network", "remove", "--yes", "--force", "100"),
        ("vm", "list"),
        ("vm", "define", "{xml}"),
        ("vm", "info", "web1"),
        ("vm", "start", "web1"),
        ("vm", "meta", "web1", "--selector", "load"),
    ],
    ids=" ".join,
)


@SCHEMA_GUARDED_COMMANDS
def test_commands_on_an_uninitialised_tree_ask_for_init(
    fresh: PvcRunner, store: ZkStore, tmp_path: Path, args: tuple[str, ...]
) -> None:
    xml = tmp_path / "web1.xml"
    xml.write_text(domain_xml("web1", vm_uuid(1)))

    result = fresh(*(arg.format(xml=xml) for arg in args), expect=5)

    assert result.stderr == NOT_INITIALISED + "\n"
    assert store.children("/") == []  # nothing was written


@SCHEMA_GUARDED_COMMANDS
def test_a_newer_schema_version_is_refused(
    pvc: PvcRunner, cluster: ZkStore, tmp_path: Path, args: tuple[str, ...]
) -> None:
    define_vm(cluster, domain_xml("web1", vm_uuid(1)))
    add_network(cluster, 100)
    cluster.commit([SetData(schema.SCHEMA_VERSION_PATH, b"99")])
    before = tree(cluster)
    xml = tmp_path / "web2.xml"
    xml.write_text(domain_xml("web2", vm_uuid(2)))

    result = pvc(*(arg.format(xml=xml) for arg in args), expect=5)

    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message
    assert re.search(r"\b99\b", message), message  # the tree's version
    assert re.search(rf"(?<![\d.]){schema.SCHEMA_VERSION}\b", message), message  # this program's
    assert "upgrade" in message
    assert tree(cluster) == before


# --------------------------------------------------------------------------- status


def test_status_counts_in_every_format(pvc: PvcRunner, tmp_path: Path) -> None:
    define(pvc, tmp_path, "web1", 1)
    define(pvc, tmp_path, "web2", 2)
    pvc("vm", "start", "web1")
    pvc("network", "add", "100")

    data = status_json(pvc)

    assert data == {
        "healthy": True,
        "schema_version": schema.SCHEMA_VERSION,
        "primary_node": "",
        "default_selector": "mem",
        "nodes": {"total": 3, "daemon_state": {"run": 3}, "domain_state": {"ready": 3}},
        "vms": {"total": 2, "state": {"start": 1, "stop": 1}, "failed": []},
        "networks": 1,
    }
    assert yaml.safe_load(pvc("cluster", "status", "-o", "yaml").stdout) == data

    pretty = pvc("cluster", "status").stdout
    assert "\x1b[" not in pretty
    assert parse_fields(pretty) == {
        "Health": "healthy",
        "Nodes": "3 (3 run; 3 ready)",
        "VMs": "2 (1 start, 1 stop)",
        "Failed VMs": "-",
        "Networks": "1",
        "Primary node": "-",
        "Default selector": "mem",
        "Schema version": str(schema.SCHEMA_VERSION),
    }


def test_status_of_a_flushed_node_is_not_healthy(pvc: PvcRunner, tmp_path: Path) -> None:
    define(pvc, tmp_path, "web1", 1)
    pvc("node", "flush", "hv2")

    data = status_json(pvc)

    assert data["healthy"] is False
    assert data["nodes"]["domain_state"] == {"flush": 1, "ready": 2}
    assert data["nodes"]["daemon_state"] == {"run": 3}
    assert data["vms"]["failed"] == []
    fields = parse_fields(pvc("cluster", "status").stdout)
    assert fields["Health"] == "degraded"
    assert fields["Nodes"] == "3 (3 run; 1 flush, 2 ready)"


def test_status_lists_failed_vms(pvc: PvcRunner, cluster: ZkStore, tmp_path: Path) -> None:
    for number, name in enumerate(("web1", "web2", "web3"), start=1):
        define(pvc, tmp_path, name, number)
    pvc("vm", "start", "web1")
    update_vm(
        cluster,
        find_vm(cluster, "web2"),
        {"state": "fail", "failedreason": "libvirt refused it"},
        event="test: fail",
    )

    data = status_json(pvc)

    assert data["healthy"] is False
    assert data["vms"] == {
        "total": 3,
        "state": {"fail": 1, "start": 1, "stop": 1},
        "failed": ["web2"],
    }
    assert data["nodes"]["domain_state"] == {"ready": 3}
    assert yaml.safe_load(pvc("cluster", "status", "-o", "yaml").stdout) == data
    fields = parse_fields(pvc("cluster", "status").stdout)
    assert fields["Health"] == "degraded"
    assert fields["Failed VMs"] == "web2"
    assert fields["VMs"] == "3 (1 fail, 1 start, 1 stop)"


# --------------------------------------------------------------------------- schema upgrade


def make_version_1(store: ZkStore) -> None:
    """Turn the test tree into what a version-1 program left: no version-2 or -3 keys."""
    ops: list[Any] = [
        Delete(schema.liveness_path(name)) for name in store.children(schema.LIVENESS_PATH)
    ]
    ops.append(Delete(schema.LIVENESS_PATH))
    ops.append(Delete(schema.LOCKS_PATH))
    for uuid in store.children(schema.DOMAINS_PATH):
        ops.append(Delete(schema.domain_key_path(uuid, "migration_method")))
        ops.append(Delete(schema.domain_key_path(uuid, "request")))
        ops.append(Delete(schema.domain_key_path(uuid, "confirmed")))
        ops.append(Delete(schema.domain_key_path(uuid, "history")))
    for name in store.children(schema.NODES_PATH):
        ops.append(Delete(schema.node_key_path(name, "stats")))
        ops.append(Delete(schema.node_key_path(name, "libvirturi")))
        ops.append(Delete(schema.node_key_path(name, "migrationuri")))
    ops.append(SetData(schema.SCHEMA_VERSION_PATH, schema.encode_schema_version(1)))
    store.commit(ops)


def test_an_older_tree_is_refused_until_upgraded_and_upgrade_is_idempotent(
    pvc: PvcRunner, cluster: ZkStore
) -> None:
    define_vm(cluster, domain_xml("old1", vm_uuid(1)), target="hv1")
    make_version_1(cluster)
    refused = pvc("vm", "list", expect=5).output
    current = schema.SCHEMA_VERSION
    assert (
        f"schema is version 1, older than this program's {current}: run 'pvc cluster upgrade'"
        in refused
    )
    status = status_json(pvc)  # the summary still works, and says so
    assert (status["schema_version"], status["healthy"]) == (1, False)
    assert "run 'pvc cluster upgrade'" in pvc("cluster", "status").output
    assert f"from version 1 to {current}" in pvc("cluster", "upgrade").output
    assert f"already at version {current}" in pvc("cluster", "upgrade").output
    # Every key is back with its default, and writes of the new keys work.
    assert pvc.info("old1")["migration_method"] == "none"
    pvc("vm", "meta", "old1", "--method", "live")
    assert pvc.info("old1")["migration_method"] == "live"
    assert cluster.exists(schema.LIVENESS_PATH) and cluster.exists(schema.LOCKS_PATH)
    assert cluster.get(schema.node_key_path("hv2", "libvirturi")).data == b""
    assert status_json(pvc)["schema_version"] == current
    assert pvc("cluster", "check").exit_code == 0  # every key back, each as it should be
    # Requests are numbered again from the upgrade's default.
    assert cluster.get(schema.domain_key_path(vm_uuid(1), "request")).data == b"0"
    pvc("vm", "start", "old1")
    assert cluster.get(schema.domain_key_path(vm_uuid(1), "request")).data == b"1"


# --------------------------------------------------------------------------- check


def test_check_passes_a_tree_written_by_the_commands_and_names_each_damaged_key(
    pvc: PvcRunner, store: ZkStore, tmp_path: Path
) -> None:
    define(pvc, tmp_path, "web1", 1)
    define(pvc, tmp_path, "web2", 2)
    pvc("vm", "meta", "web1", "--limit", "hv1,hv2", "--selector", "vms", "--autostart")
    pvc("vm", "start", "web2")
    pvc("network", "add", "100", "--description", "front")
    pvc("node", "flush", "hv3")

    assert pvc("cluster", "check").stdout == (
        "No problems found (2 VMs, 3 nodes, 1 networks checked)\n"
    )
    before = tree(store)

    uuid = vm_uuid(1)
    store.commit(
        [
            SetData(schema.domain_key_path(uuid, "node_limit"), b"hv1,hv9"),
            SetData(schema.domain_key_path(uuid, "node_autostart"), b"maybe"),
        ]
    )
    damaged = pvc("cluster", "check", expect=1).stdout.splitlines()
    assert damaged == [
        f"/domains/{uuid}/node_autostart: 'maybe' is not one of True, False",
        f"/domains/{uuid}/node_limit: names unknown node(s) hv9",
        "2 problem(s) found (2 VMs, 3 nodes, 1 networks checked)",
    ]
    data = json.loads(pvc("cluster", "check", "-o", "json", expect=1).stdout)
    assert data["ok"] is False
    assert {problem["path"] for problem in data["problems"]} == {
        f"/domains/{uuid}/node_autostart",
        f"/domains/{uuid}/node_limit",
    }
    # The check only reads: nothing but the two damaged keys differs from before.
    after = tree(store)
    assert {path for path in after if after[path] != before.get(path)} == {
        schema.domain_key_path(uuid, "node_limit"),
        schema.domain_key_path(uuid, "node_autostart"),
    }
