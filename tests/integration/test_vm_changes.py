"""pvc vm meta / modify / start..disable / migrate / move / unmigrate on the real ZooKeeper."""

from __future__ import annotations

import pytest

from pvc_common.mutations import update_node
from pvc_common.node_ops import register_node
from pvc_common.snapshot import load_node
from pvc_common.store import ZkStore
from tests.integration.conftest import PvcRunner, domain_xml, vm_uuid


@pytest.fixture
def web1(pvc: PvcRunner) -> str:
    """A stopped VM 'web1' on hv1, limited to hv1..hv3, selector vcpus, autostart off."""
    pvc.define(domain_xml("web1", vm_uuid(1)), "-t", "hv1", "-l", "hv1,hv2,hv3", "-s", "vcpus")
    return "web1"


def placement(pvc: PvcRunner, vm: str) -> tuple[str, str, str]:
    data = pvc.info(vm)
    return data["state"], data["node"], data["lastnode"]


# --------------------------------------------------------------------------- meta


def test_meta_changes_only_the_fields_given(pvc: PvcRunner, web1: str) -> None:
    pvc("vm", "meta", web1, "--autostart")
    data = pvc.info(web1)
    assert (data["node_limit"], data["node_selector"], data["node_autostart"]) == (
        ["hv1", "hv2", "hv3"],
        "vcpus",
        True,
    )
    pvc("vm", "meta", web1, "-s", "load")
    data = pvc.info(web1)
    assert (data["node_limit"], data["node_selector"], data["node_autostart"]) == (
        ["hv1", "hv2", "hv3"],
        "load",
        True,
    )
    pvc("vm", "meta", web1, "-l", "hv2", "-A")
    data = pvc.info(web1)
    assert (data["node_limit"], data["node_selector"], data["node_autostart"]) == (
        ["hv2"],
        "load",
        False,
    )


def test_meta_empty_limit_clears_it(pvc: PvcRunner, web1: str) -> None:
    pvc("vm", "meta", web1, "--limit", "")
    assert pvc.info(web1)["node_limit"] == []
    assert "any node" in pvc("vm", "info", web1).output


def test_meta_sets_the_migration_method(pvc: PvcRunner, web1: str) -> None:
    assert pvc.info(web1)["migration_method"] == "none"
    output = pvc("vm", "meta", web1, "--method", "live").output
    assert "migration method live" in output
    assert pvc.info(web1)["migration_method"] == "live"
    assert "Invalid value" in pvc("vm", "meta", web1, "-m", "teleport", expect=2).output
    assert pvc.info(web1)["migration_method"] == "live"


def test_define_with_a_migration_method(pvc: PvcRunner) -> None:
    pvc("vm", "define", "-m", "shutdown", "-", input=domain_xml("db1", vm_uuid(9)))
    assert pvc.info("db1")["migration_method"] == "shutdown"


def test_meta_refusals(pvc: PvcRunner, web1: str) -> None:
    assert "nothing to change" in pvc("vm", "meta", web1, expect=2).output
    assert "unknown node(s): hv7" in pvc("vm", "meta", web1, "-l", "hv1,hv7", expect=2).output
    assert "Invalid value" in pvc("vm", "meta", web1, "-s", "random", expect=2).output
    assert "no VM named 'nope'" in pvc("vm", "meta", "nope", "-a", expect=3).output
    assert pvc.info(web1)["node_limit"] == ["hv1", "hv2", "hv3"]


def test_meta_limit_never_leaves_a_running_vm_outside_it(
    pvc: PvcRunner, cluster: ZkStore, web1: str
) -> None:
    pvc("vm", "start", web1)  # to run on hv1
    result = pvc("vm", "meta", web1, "-l", "hv2,hv3", "-a", expect=5)
    assert result.output.strip().splitlines() == [
        "Error: vm 'web1' runs on hv1, outside the limit hv2,hv3: stop it, or migrate it "
        "into the limit first"
    ]
    data = pvc.info(web1)
    assert (data["node_limit"], data["node_autostart"]) == (["hv1", "hv2", "hv3"], False)
    pvc("vm", "meta", web1, "-l", "hv1,hv2")  # its node stays in the limit
    assert pvc.info(web1)["node_limit"] == ["hv1", "hv2"]
    pvc("vm", "meta", web1, "-l", "")  # no limit: any node
    # Stopped, but still listed by hv2 (shut down there a moment ago, say): refused too.
    pvc("vm", "stop", web1, "--yes")
    hv2 = load_node(cluster, "hv2")
    update_node(cluster, hv2, {"runningdomains": (vm_uuid(1),)}, event="test: lists web1")
    assert "runs on hv2, outside" in pvc("vm", "meta", web1, "-l", "hv1", expect=5).output
    update_node(cluster, load_node(cluster, "hv2"), {"runningdomains": ()}, event="test")
    pvc("vm", "meta", web1, "-l", "hv3")  # a stopped VM may get any limit
    assert pvc.info(web1)["node_limit"] == ["hv3"]


# --------------------------------------------------------------------------- modify


def test_modify_updates_xml_and_everything_derived(pvc: PvcRunner, web1: str) -> None:
    new_xml = domain_xml("web1-renamed", vm_uuid(1), memory_mib=2048, rbd=("vms/new0",))
    pvc("vm", "modify", web1, "-", input=new_xml)
    data = pvc.info("web1-renamed")
    assert (data["memory_mib"], data["rbd_list"], data["uuid"]) == (2048, ["vms/new0"], vm_uuid(1))
    assert pvc("vm", "dump", vm_uuid(1)).output.strip() == new_xml
    pvc("vm", "info", "web1", expect=3)


def test_modify_refuses_bad_xml_and_a_new_uuid(pvc: PvcRunner, web1: str) -> None:
    before = pvc("vm", "dump", web1).output
    assert "invalid domain XML" in pvc("vm", "modify", web1, "-", input="<domain>", expect=2).output
    other = domain_xml("web1", vm_uuid(9))
    assert "UUID cannot change" in pvc("vm", "modify", web1, "-", input=other, expect=2).output
    assert pvc("vm", "dump", web1).output == before


def test_modify_with_restart_restarts_a_running_vm(pvc: PvcRunner, web1: str) -> None:
    pvc("vm", "start", web1)
    pvc("vm", "modify", "--restart", web1, "-", input=domain_xml("web1", vm_uuid(1), vcpus=4))
    assert pvc.info(web1)["state"] == "restart"


# --------------------------------------------------------------------------- state intent


def test_state_changes_write_intent_and_refuse_nonsense(pvc: PvcRunner, web1: str) -> None:
    assert "cannot restart" in pvc("vm", "restart", web1, expect=5).output
    assert "cannot shutdown" in pvc("vm", "shutdown", web1, expect=5).output
    pvc("vm", "start", web1)
    assert pvc.info(web1)["state"] == "start"
    assert "cannot start" in pvc("vm", "start", web1, expect=5).output
    pvc("vm", "restart", web1)
    assert pvc.info(web1)["state"] == "restart"
    pvc("vm", "shutdown", web1)
    assert pvc.info(web1)["state"] == "shutdown"
    pvc("vm", "stop", web1, input="n\n", expect=1)
    assert pvc.info(web1)["state"] == "shutdown"
    pvc("vm", "stop", web1, "--yes")
    assert pvc.info(web1)["state"] == "stop"
    pvc("vm", "disable", web1, "--yes")
    assert pvc.info(web1)["state"] == "disable"
    assert "cannot disable" in pvc("vm", "disable", web1, "--yes", expect=5).output


# --------------------------------------------------------------------------- migrate / move


def test_migrate_records_previous_node_and_unmigrate_returns(pvc: PvcRunner, web1: str) -> None:
    pvc("vm", "start", web1)
    pvc("vm", "migrate", web1, "-t", "hv2")
    assert placement(pvc, web1) == ("migrate", "hv2", "hv1")
    assert pvc.info(web1)["migrated"] is True
    assert "from hv1" in pvc("vm", "list").output
    pvc("vm", "unmigrate", web1, expect=5)  # refused while the migration is in progress
    # The daemon (next issue) finishes a migration by setting the state back to start.
    pvc("vm", "stop", web1, "--yes")
    pvc("vm", "unmigrate", web1)
    assert placement(pvc, web1) == ("stop", "hv1", "")
    assert "not migrated" in pvc("vm", "unmigrate", web1, expect=5).output


def test_force_migrate_keeps_the_original_previous_node(pvc: PvcRunner, web1: str) -> None:
    pvc("vm", "migrate", web1, "-t", "hv2")
    assert placement(pvc, web1) == ("stop", "hv2", "hv1")
    result = pvc("vm", "migrate", web1, "-t", "hv3", expect=5)
    assert "already migrated from hv1" in result.output
    assert placement(pvc, web1) == ("stop", "hv2", "hv1")
    pvc("vm", "migrate", web1, "-t", "hv3", "--force")
    assert placement(pvc, web1) == ("stop", "hv3", "hv1")
    pvc("vm", "unmigrate", web1)
    assert placement(pvc, web1) == ("stop", "hv1", "")


def test_move_is_permanent(pvc: PvcRunner, web1: str) -> None:
    pvc("vm", "migrate", web1, "-t", "hv2")
    pvc("vm", "move", web1, "-t", "hv3")
    assert placement(pvc, web1) == ("stop", "hv3", "")
    pvc("vm", "unmigrate", web1, expect=5)


def test_automatic_target_uses_selector_within_limit(pvc: PvcRunner, web1: str) -> None:
    # selector vcpus, limit hv1..hv3, on hv1: of hv2 (6 vCPUs) and hv3 (4), hv3 wins.
    pvc("vm", "migrate", web1)
    assert placement(pvc, web1) == ("stop", "hv3", "hv1")
    pvc("vm", "meta", web1, "-l", "hv2,hv3")
    pvc("vm", "move", web1)  # only hv2 remains in the limit besides the current node
    assert placement(pvc, web1) == ("stop", "hv2", "")


def test_migration_refusals_change_nothing(pvc: PvcRunner, cluster: ZkStore, web1: str) -> None:
    register_node(cluster, "hv4", daemonstate="run", domainstate="flushed", memfree=64000)
    register_node(cluster, "hv5", daemonstate="run", domainstate="ready", memfree=64000)
    cases = [
        (("-t", "hv1"), 5, "'web1' is already on hv1"),
        (("-t", "hv5"), 5, "outside the node limit"),
        (("-t", "hv9"), 3, "no node named 'hv9'"),
    ]
    for args, code, message in cases:
        assert message in pvc("vm", "migrate", web1, *args, expect=code).output
        assert message in pvc("vm", "move", web1, *args, expect=code).output
    pvc("vm", "meta", web1, "-l", "hv1,hv4")
    assert "hv4 is not ready" in pvc("vm", "migrate", web1, "-t", "hv4", expect=5).output
    result = pvc("vm", "migrate", web1, expect=5)
    assert "no node can take 'web1'" in result.output
    assert "hv4 is not ready" in result.output
    assert placement(pvc, web1) == ("stop", "hv1", "")


# --------------------------------------------------------------------------- --wait


def test_wait_without_a_daemon_times_out_with_the_state_it_saw(pvc: PvcRunner, web1: str) -> None:
    result = pvc("vm", "start", web1, "--wait", "--wait-timeout", "1", expect=1)
    assert "timed out after 1 s (state start)" in result.output
    assert "running on nowhere" in result.output  # the progress line
    assert pvc.info(web1)["state"] == "start"  # the request itself stays in place


def test_wait_reports_a_stopped_vm_at_once(pvc: PvcRunner, web1: str) -> None:
    # A stopped VM only changes node: nothing has to run, so the outcome is immediate.
    result = pvc("vm", "move", web1, "-t", "hv2", "--wait")
    assert "assigned to hv2, stop" in result.output
