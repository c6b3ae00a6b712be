"""``pvc node ...`` and ``pvc network ...`` against the real ZooKeeper."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from pvc_common import schema
from pvc_common.mutations import update_node
from pvc_common.node_ops import register_node
from pvc_common.snapshot import load_node
from pvc_common.store import ZkStore
from pvc_common.vm_ops import define_vm
from tests.integration.conftest import NODE_FIGURES, PvcRunner, domain_xml, parse_fields, vm_uuid

PASSWORD = "s3cret-bmc-pass"


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICOLOR_FORCE", raising=False)


@pytest.fixture
def bmc(cluster: ZkStore) -> ZkStore:
    """hv1 and hv2 re-registered with BMC credentials (their figures must stay)."""
    for name in ("hv1", "hv2"):
        register_node(
            cluster,
            name,
            ipmihostname=f"{name}-bmc.example",
            ipmiusername="admin",
            ipmipassword=PASSWORD,
        )
    assert load_node(cluster, "hv1").ipmipassword == PASSWORD
    return cluster


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header words and rows (split on whitespace) of a pretty table without blank cells."""
    header, *rows = text.splitlines()
    return header.split(), [row.split() for row in rows]


def node_state(store: ZkStore, name: str) -> tuple[bytes, str, int]:
    """Raw domainstate, decoded domainstate (through the snapshot reader) and the row version."""
    raw = store.get(schema.node_key_path(name, "domainstate")).data
    node = load_node(store, name)
    return raw, node.domainstate, node.version


# --------------------------------------------------------------------------- node list / info


def test_node_list_pretty(pvc: PvcRunner) -> None:
    result = pvc("node", "list")

    header, rows = parse_table(result.stdout)
    assert header[:4] == ["Name", "Type", "Daemon", "Domains"]
    assert [row[0] for row in rows] == ["hv1", "hv2", "hv3"]
    for row in rows:
        figures = NODE_FIGURES[row[0]]
        assert row[1:4] == ["hypervisor", "run", "ready"]
        name, _, _, _, vms, vcpus, load, memtotal, memfree, memalloc, memprov = row
        assert (int(vms), int(vcpus), float(load)) == (
            figures["domainscount"],
            figures["vcpualloc"],
            figures["cpuload"],
        )
        assert (int(memtotal), int(memfree), int(memalloc), int(memprov)) == (
            figures["memtotal"],
            figures["memfree"],
            0,
            figures["memprov"],
        )
    assert "\x1b[" not in result.stdout


def test_node_list_json_has_figures_and_no_password(pvc: PvcRunner, bmc: ZkStore) -> None:
    result = pvc("node", "list", "-o", "json")

    nodes: list[dict[str, Any]] = json.loads(result.stdout)
    assert [node["name"] for node in nodes] == ["hv1", "hv2", "hv3"]
    for node in nodes:
        assert "ipmipassword" not in node
        assert "version" not in node
        for key, value in NODE_FIGURES[node["name"]].items():
            assert node[key] == value, (node["name"], key)
        assert (node["node_type"], node["daemonstate"], node["domainstate"]) == (
            "hypervisor",
            "run",
            "ready",
        )
    assert nodes[0]["ipmihostname"] == "hv1-bmc.example"
    assert nodes[0]["ipmiusername"] == "admin"
    assert nodes[2]["ipmihostname"] == ""
    assert PASSWORD not in result.output
    assert PASSWORD not in pvc("node", "list", "-o", "yaml").output
    assert PASSWORD not in pvc("node", "list").output


def test_node_info_in_every_format(pvc: PvcRunner, bmc: ZkStore) -> None:
    data = json.loads(pvc("node", "info", "hv2", "-o", "json").stdout)
    listed = json.loads(pvc("node", "list", "-o", "json").stdout)

    assert data == listed[1]
    assert data["name"] == "hv2" and data["memfree"] == 9000 and data["cpuload"] == 2.5
    assert "ipmipassword" not in data
    assert yaml.safe_load(pvc("node", "info", "hv2", "-o", "yaml").stdout) == data

    pretty = pvc("node", "info", "hv2")
    info = parse_fields(pretty.stdout)
    assert info["Name"] == "hv2"
    assert info["Type"] == "hypervisor"
    assert info["Daemon state"] == "run"
    assert info["Domain state"] == "ready"
    assert info["Running VMs"] == "3"
    assert info["vCPUs allocated"] == "6"
    assert info["Load"] == "2.50"
    assert info["Memory total"] == "16384 MiB"
    assert info["Memory free"] == "9000 MiB"
    assert info["Memory provisioned"] == "10000 MiB"
    assert PASSWORD not in pretty.output


@pytest.mark.parametrize("fmt", ["pretty", "json", "yaml"])
def test_node_info_of_an_unknown_node_exits_3(pvc: PvcRunner, fmt: str) -> None:
    result = pvc("node", "info", "hv9", "-o", fmt, expect=3)
    assert result.stderr == "Error: no node named 'hv9'\n"
    assert result.stdout == ""


# --------------------------------------------------------------------------- flush / ready


def test_flush_writes_the_intent_and_is_refused_twice(pvc: PvcRunner, cluster: ZkStore) -> None:
    _, _, version = node_state(cluster, "hv1")

    result = pvc("node", "flush", "hv1")

    assert result.stdout == "Node 'hv1': flush requested (domain state flush)\n"
    assert node_state(cluster, "hv1") == (b"flush", "flush", version + 1)
    assert node_state(cluster, "hv2")[:2] == (b"ready", "ready")

    again = pvc("node", "flush", "hv1", expect=5)
    assert again.stderr == "Error: node 'hv1' is already flush\n"
    assert node_state(cluster, "hv1") == (b"flush", "flush", version + 1)


def test_flush_of_a_flushed_node_is_refused(pvc: PvcRunner, cluster: ZkStore) -> None:
    update_node(cluster, load_node(cluster, "hv3"), {"domainstate": "flushed"}, event="test")
    before = node_state(cluster, "hv3")

    result = pvc("node", "flush", "hv3", expect=5)

    assert result.stderr == "Error: node 'hv3' is already flushed\n"
    assert node_state(cluster, "hv3") == before


def test_ready_on_a_flushed_node_writes_unflush(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc("node", "flush", "hv2")
    # The daemon finishes draining the node.
    update_node(cluster, load_node(cluster, "hv2"), {"domainstate": "flushed"}, event="test")
    _, _, version = node_state(cluster, "hv2")

    result = pvc("node", "ready", "hv2")

    assert result.stdout == "Node 'hv2': ready requested (domain state unflush)\n"
    assert node_state(cluster, "hv2") == (b"unflush", "unflush", version + 1)
    again = pvc("node", "ready", "hv2", expect=5)
    assert again.stderr == "Error: node 'hv2' is already unflush\n"


def test_ready_on_a_ready_node_is_refused(pvc: PvcRunner, cluster: ZkStore) -> None:
    before = node_state(cluster, "hv1")

    result = pvc("node", "ready", "hv1", expect=5)

    assert result.stderr == "Error: node 'hv1' is already ready\n"
    assert node_state(cluster, "hv1") == before


@pytest.mark.parametrize("action", ["flush", "ready"])
def test_flush_and_ready_are_refused_during_fence_recovery(
    pvc: PvcRunner, cluster: ZkStore, action: str
) -> None:
    update_node(cluster, load_node(cluster, "hv1"), {"domainstate": "fence-flush"}, event="test")
    before = node_state(cluster, "hv1")

    result = pvc("node", action, "hv1", expect=5)

    assert "being recovered after a fence" in result.stderr
    assert node_state(cluster, "hv1") == before


@pytest.mark.parametrize("action", ["flush", "ready"])
def test_flush_and_ready_of_an_unknown_node_exit_3(pvc: PvcRunner, action: str) -> None:
    result = pvc("node", action, "hv9", expect=3)
    assert result.stderr == "Error: no node named 'hv9'\n"


# --------------------------------------------------------------------------- networks


def test_network_add_list_info(pvc: PvcRunner, cluster: ZkStore) -> None:
    result = pvc("network", "add", "100", "-d", "prod", "-p", "managed")
    assert result.stdout == "Network 100 (managed) added\n"
    assert cluster.get(schema.network_path(100)).data == b"prod"
    assert cluster.get(schema.network_key_path(100, "nettype")).data == b"managed"
    pvc("network", "add", "7", "-d", "storage")  # bridged by default; sorts before 100

    header, rows = parse_table(pvc("network", "list").stdout)
    assert header == ["VNI", "Type", "Description"]
    assert rows == [["7", "bridged", "storage"], ["100", "managed", "prod"]]
    listed = json.loads(pvc("network", "list", "-o", "json").stdout)
    assert listed == [
        {"vni": 7, "description": "storage", "nettype": "bridged"},
        {"vni": 100, "description": "prod", "nettype": "managed"},
    ]
    assert yaml.safe_load(pvc("network", "list", "-o", "yaml").stdout) == listed

    define_vm(cluster, domain_xml("web1", vm_uuid(1), bridges=("vmbr100",)))
    define_vm(cluster, domain_xml("db1", vm_uuid(2), bridges=("vmbr7",)))
    define_vm(cluster, domain_xml("app1", vm_uuid(3), bridges=("vmbr7", "vmbr100")))
    define_vm(cluster, domain_xml("odd1", vm_uuid(4), bridges=("vmbr1000", "vmbr0100")))

    info = parse_fields(pvc("network", "info", "100").stdout)
    assert info == {"VNI": "100", "Type": "managed", "Description": "prod", "VMs": "app1, web1"}
    data = json.loads(pvc("network", "info", "100", "-o", "json").stdout)
    assert data == {
        "vni": 100,
        "description": "prod",
        "nettype": "managed",
        "vms": ["app1", "web1"],
    }
    assert yaml.safe_load(pvc("network", "info", "100", "-o", "yaml").stdout) == data
    assert json.loads(pvc("network", "info", "7", "-o", "json").stdout)["vms"] == ["app1", "db1"]


def test_network_info_without_vms_shows_a_dash(pvc: PvcRunner) -> None:
    pvc("network", "add", "42")
    assert parse_fields(pvc("network", "info", "42").stdout) == {
        "VNI": "42",
        "Type": "bridged",
        "Description": "-",
        "VMs": "-",
    }


def test_network_add_twice_is_a_conflict(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc("network", "add", "100", "-d", "prod", "-p", "managed")

    result = pvc("network", "add", "100", "-d", "other", expect=4)

    assert result.stderr == "Error: network 100 already exists\n"
    assert cluster.get(schema.network_path(100)).data == b"prod"
    assert cluster.get(schema.network_key_path(100, "nettype")).data == b"managed"


@pytest.mark.parametrize("vni", ["1", "16777215"])
def test_network_add_accepts_the_vni_bounds(pvc: PvcRunner, cluster: ZkStore, vni: str) -> None:
    pvc("network", "add", vni)
    assert cluster.children(schema.NETWORKS_PATH) == [vni]


@pytest.mark.parametrize(
    ("vni", "message"),
    [
        ("0", "Error: invalid VNI 0: must be between 1 and 16777215"),
        ("16777216", "Error: invalid VNI 16777216: must be between 1 and 16777215"),
        ("abc", "'abc' is not a valid integer"),
    ],
)
def test_network_add_rejects_an_invalid_vni(
    pvc: PvcRunner, cluster: ZkStore, vni: str, message: str
) -> None:
    result = pvc("network", "add", vni, expect=2)

    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert cluster.children(schema.NETWORKS_PATH) == []


def test_network_remove_is_refused_while_a_vm_uses_it(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc("network", "add", "100")
    define_vm(cluster, domain_xml("web1", vm_uuid(1), bridges=("vmbr100",)))

    refused = pvc("network", "remove", "--yes", "100", expect=5)

    assert refused.stderr == (
        "Error: network 100 is used by web1: use --force to remove it anyway\n"
    )
    assert cluster.exists(schema.network_path(100))
    assert cluster.exists(schema.network_key_path(100, "nettype"))

    forced = pvc("network", "remove", "--yes", "--force", "100")

    assert forced.stdout == "Network 100 removed\n"
    assert cluster.children(schema.NETWORKS_PATH) == []
    assert [vm["name"] for vm in json.loads(pvc("vm", "list", "-o", "json").stdout)] == ["web1"]


def test_network_remove_asks_for_confirmation(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc("network", "add", "100")
    pvc("network", "add", "200")

    declined = pvc("network", "remove", "100", input="n\n", expect=1)

    assert "Remove network 100? [y/N]" in declined.output
    assert "Aborted" in declined.output
    assert cluster.children(schema.NETWORKS_PATH) == ["100", "200"]
    assert cluster.exists(schema.network_key_path(100, "nettype"))

    accepted = pvc("network", "remove", "100", input="y\n")
    assert "Network 100 removed" in accepted.stdout
    assert cluster.children(schema.NETWORKS_PATH) == ["200"]

    unasked = pvc("network", "remove", "--yes", "200")
    assert unasked.output == "Network 200 removed\n"
    assert cluster.children(schema.NETWORKS_PATH) == []


def test_network_remove_and_info_of_an_unknown_vni_exit_3(pvc: PvcRunner) -> None:
    pvc("network", "add", "100")
    removed = pvc("network", "remove", "--yes", "999", expect=3)
    assert removed.stderr == "Error: no network 999\n"
    info = pvc("network", "info", "999", expect=3)
    assert info.stderr == "Error: no network 999\n"
