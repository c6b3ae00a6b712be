"""pvc vm define / dump / undefine / remove on the real ZooKeeper."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvc_common import schema
from pvc_common.snapshot import find_vm, load_vms
from pvc_common.store import ZkStore
from tests.integration.conftest import PvcRunner, domain_xml, vm_uuid


def test_define_with_limit_selector_autostart_reads_back(pvc: PvcRunner) -> None:
    xml = domain_xml("web1", vm_uuid(1), rbd=("vms/web1_disk0", "vms/web1_disk1"))
    pvc.define(xml, "--limit", "hv3,hv1", "--selector", "vcpus", "--autostart")
    data = pvc.info("web1")
    assert data["node_limit"] == ["hv1", "hv3"]
    assert data["node_selector"] == "vcpus"
    assert data["node_autostart"] is True
    assert data["state"] == "stop"
    assert data["rbd_list"] == ["vms/web1_disk0", "vms/web1_disk1"]
    # vcpus selector within the limit {hv1, hv3}: hv1 has the fewest vCPUs.
    assert data["node"] == "hv1"


def test_define_stores_classic_string_formats(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1), rbd=("a/b", "c/d")), "-l", "hv2,hv1", "-a")
    uuid = vm_uuid(1)
    raw = {
        key: cluster.get(schema.domain_key_path(uuid, key)).data.decode()
        for key in ("state", "node_limit", "node_autostart", "rbdlist", "lastnode", "node_selector")
    }
    assert raw == {
        "state": "stop",
        "node_limit": "hv1,hv2",
        "node_autostart": "True",
        "rbdlist": "a/b,c/d",
        "lastnode": "",
        "node_selector": "none",
    }
    assert cluster.get(schema.domain_path(uuid)).data == b"web1"


@pytest.mark.parametrize(
    ("args", "expected_node"),
    [
        ((), "hv2"),  # default selector mem: most free memory
        (("-s", "mem"), "hv2"),
        (("-s", "memprov"), "hv3"),
        (("-s", "load"), "hv3"),
        (("-s", "vcpus"), "hv1"),
        (("-s", "vms"), "hv1"),
        (("-s", "load", "-l", "hv1,hv2"), "hv1"),  # the limit given on the same command counts
        (("-s", "mem", "-l", "hv3"), "hv3"),
        (("-t", "hv3"), "hv3"),
    ],
)
def test_initial_node_uses_the_limit_and_selector_given(
    pvc: PvcRunner, args: tuple[str, ...], expected_node: str
) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)), *args)
    assert pvc.info("web1")["node"] == expected_node


def test_define_refusals_write_nothing(pvc: PvcRunner, cluster: ZkStore) -> None:
    ok = domain_xml("web1", vm_uuid(1))
    cases = [
        ("<domain><name>web1</name>", (), 2, "invalid domain XML"),
        ("not xml at all", (), 2, "invalid domain XML"),
        (ok.replace("<name>web1</name>", ""), (), 2, "<name>"),
        (ok, ("-t", "hv9"), 3, "no node named 'hv9'"),
        (ok, ("-l", "hv1,hv9"), 2, "unknown node(s): hv9"),
        (ok, ("-t", "hv2", "-l", "hv1"), 5, "outside the node limit"),
        (domain_xml("big", vm_uuid(2), memory_mib=20000), (), 5, "no node can take 'big'"),
        (domain_xml("big", vm_uuid(2), memory_mib=7000), ("-t", "hv1"), 5, "6000 MiB free"),
    ]
    for xml, args, code, message in cases:
        result = pvc.define(xml, *args, expect=code)
        assert message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert cluster.children(schema.DOMAINS_PATH) == []


def test_define_refuses_a_duplicate_name_or_uuid(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)))
    assert "already exists" in pvc.define(domain_xml("web1", vm_uuid(2)), expect=4).output
    assert "already exists" in pvc.define(domain_xml("web2", vm_uuid(1)), expect=4).output
    assert [vm.name for vm in load_vms(cluster)] == ["web1"]


def test_define_from_file_and_dump_round_trip(pvc: PvcRunner, tmp_path: Path) -> None:
    xml = domain_xml("web1", vm_uuid(1))
    (tmp_path / "web1.xml").write_text(xml)
    pvc("vm", "define", str(tmp_path / "web1.xml"))
    assert pvc("vm", "dump", "web1").output.strip() == xml


def test_names_and_uuids_identify_exactly(pvc: PvcRunner) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)))
    pvc.define(domain_xml("web10", vm_uuid(2)))
    assert pvc.info("web1")["uuid"] == vm_uuid(1)
    assert pvc.info(vm_uuid(2))["name"] == "web10"
    assert pvc.info(vm_uuid(2).upper())["name"] == "web10"
    assert "no VM named 'web'" in pvc("vm", "info", "web", expect=3).output
    assert "no VM named" in pvc("vm", "info", vm_uuid(2)[:-1], expect=3).output


def test_undefine_asks_refuses_running_and_removes(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)))
    pvc("vm", "undefine", "web1", input="n\n", expect=1)
    assert find_vm(cluster, "web1")
    pvc("vm", "start", "web1")
    assert "stop it first" in pvc("vm", "undefine", "web1", "--yes", expect=5).output
    pvc("vm", "stop", "web1", "--yes")
    pvc("vm", "undefine", "web1", "--yes")
    assert cluster.children(schema.DOMAINS_PATH) == []


def test_remove_without_disks_and_refused_without_rbd_tool(
    pvc: PvcRunner, cluster: ZkStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pvc.define(domain_xml("plain", vm_uuid(1)))
    pvc.define(domain_xml("ceph", vm_uuid(2), rbd=("vms/ceph_disk0",)))
    pvc("vm", "remove", "plain", "--yes")
    # No `rbd` command on PATH: refused before anything is written.
    monkeypatch.setenv("PATH", str(tmp_path))
    result = pvc("vm", "remove", "ceph", "--yes", expect=5)
    assert "'rbd' is not installed" in result.output
    assert [(vm.name, vm.state) for vm in load_vms(cluster)] == [("ceph", "stop")]
