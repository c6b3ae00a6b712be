"""Flush and ready on the real local cluster, with every libvirtd polled throughout."""

from __future__ import annotations

import json

import pytest

from tests.cluster.driver import ClusterDriver, HostWatcher
from tests.harness.zookeeper import wait_until

pytestmark = pytest.mark.cluster


def node_json(cluster: ClusterDriver, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(cluster.pvc("node", "info", name, "-o", "json"))
    return data


def test_flush_and_ready_move_vms_within_their_limits(cluster: ClusterDriver) -> None:
    uuids = {
        "ma": cluster.start_running("ma", "hv1", "--limit", "hv1,hv2"),
        "mb": cluster.start_running("mb", "hv1", "--limit", "hv1"),
        "mc": cluster.start_running("mc", "hv1", "--selector", "vms"),
        "md": cluster.start_running("md", "hv2"),  # makes hv3 the emptier node
    }
    with HostWatcher(cluster, list(uuids.values())) as watcher:
        output = cluster.pvc("node", "flush", "hv1", "--wait", "--wait-timeout", "300")
        assert "flush of hv1 done" in output
        # libvirtd itself: A on hv2, C on the emptier hv3, B stopped, nothing left on hv1.
        cluster.wait_running_on(uuids["ma"], "hv2")
        cluster.wait_running_on(uuids["mc"], "hv3")
        assert cluster.active_on(uuids["mb"]) == []
        assert cluster.info("mb")["node_autostart"] is True
        assert len(cluster.console("ma").boots) == 1  # moved live
        assert node_json(cluster, "hv1")["domainstate"] == "flushed"

        output = cluster.pvc("node", "ready", "hv1", "--wait", "--wait-timeout", "300")
        assert "ready of hv1 done" in output
        for name in ("ma", "mb", "mc"):
            cluster.wait_running_on(uuids[name], "hv1")
        cluster.wait_running_on(uuids["md"], "hv2")
    watcher.check_never_twice()
    assert cluster.info("mb")["node_autostart"] is False
    assert cluster.info("ma")["lastnode"] == ""
    assert node_json(cluster, "hv1")["domainstate"] == "ready"


def test_ready_during_a_flush_aborts_it_cleanly(cluster: ClusterDriver) -> None:
    uuids = {name: cluster.start_running(name, "hv2") for name in ("ab1", "ab2", "ab3")}
    with HostWatcher(cluster, list(uuids.values())) as watcher:
        cluster.pvc("node", "flush", "hv2")

        def moving() -> bool:
            record = node_json(cluster, "hv2").get("maintenance", {})
            assert isinstance(record, dict)
            return any(v.get("outcome") == "in-progress" for v in record.get("vms", {}).values())

        wait_until(moving, 60, "the flush never started moving a VM", interval=0.05)
        cluster.pvc("node", "ready", "hv2")
        wait_until(
            lambda: node_json(cluster, "hv2")["domainstate"] == "ready",
            300,
            "hv2 never became ready again",
        )
        # Whatever the flush had moved came back; all three run on hv2 again.
        for uuid in uuids.values():
            cluster.wait_running_on(uuid, "hv2")
    watcher.check_never_twice()
    record = node_json(cluster, "hv2")["maintenance"]
    assert isinstance(record, dict) and record["kind"] == "ready" and record["status"] == "done"
    log = cluster.cluster.daemons["hv2"].log_path.read_text()
    assert "flush of hv2: aborted" in log
