"""Dead-node detection, fencing through real (simulated) BMCs, and recovery, in fast mode.

Real ZooKeeper, real node daemons, OpenIPMI BMC simulators driven over IPMI by the
coordinators; VMs on libvirt's test driver live inside each daemon's process, so a BMC
power-off (which SIGKILLs the node's daemon) takes them down like a power loss would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.zookeeper import wait_until

PVC = str(Path(sys.executable).with_name("pvc"))
SETTINGS = {
    "fencing": {"intervals": 3, "rechecks": 2, "timeout": 5},
    "daemon": {"keepalive_interval": 1, "reconcile_interval": 2},
    "zookeeper": {"timeout": 3},
}


@pytest.fixture
def fenced_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "fc", mode="test", bmcs=True, daemon_settings=SETTINGS)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def pvc(cluster: LocalCluster, *args: str, expect: int = 0) -> str:
    env = {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts, "NO_COLOR": "1"}
    result = subprocess.run([PVC, *args], env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == expect, output
    return output


def define_running(cluster: LocalCluster, name: str, node: str, *options: str) -> str:
    path = cluster.workdir / f"{name}.xml"
    vm_uuid = str(uuid.uuid4())
    path.write_text(cluster.vm_xml(name, vm_uuid, memory_mib=256))
    pvc(cluster, "vm", "define", "--target", node, *options, str(path))
    pvc(cluster, "vm", "start", name, "--wait")
    return vm_uuid


def info(cluster: LocalCluster, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pvc(cluster, "vm", "info", name, "-o", "json"))
    return data


def node(cluster: LocalCluster, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pvc(cluster, "node", "info", name, "-o", "json"))
    return data


def running_on(cluster: LocalCluster, vm_uuid: str) -> list[str]:
    """Nodes listing the VM as running; a fenced node's stale list does not count."""
    nodes = json.loads(pvc(cluster, "node", "list", "-o", "json"))
    return sorted(
        n["name"] for n in nodes if vm_uuid in n["runningdomains"] and n["daemonstate"] != "fenced"
    )


def test_a_powered_off_node_is_fenced_and_its_vms_recovered(fenced_cluster: LocalCluster) -> None:
    c = fenced_cluster
    free = define_running(c, "rf1", "hv3")
    pinned = define_running(c, "rf2", "hv3", "--limit", "hv3")
    limited = define_running(c, "rf3", "hv3", "--limit", "hv2,hv3")
    # Power loss of hv3, through its BMC (as a pulled plug would be).
    c.bmcs["hv3"].ipmitool("chassis", "power", "off")
    wait_until(lambda: node(c, "hv3")["domainstate"] == "flushed", 60, "hv3 never recovered")
    hv3 = node(c, "hv3")
    assert hv3["daemonstate"] == "fenced"
    assert hv3["maintenance"]["kind"] == "recovery" and hv3["maintenance"]["status"] == "done"
    assert "power off confirmed" in hv3["maintenance"]["fence"]
    fences = hv3["stats"]["fence"]  # counted for /metrics, with the BMC exchange's time
    assert fences["count"] == 1 and fences["seconds"] > 0, hv3["stats"]
    wait_until(lambda: running_on(c, free) in (["hv1"], ["hv2"]), 30, "rf1 not running again")
    wait_until(lambda: running_on(c, limited) == ["hv2"], 30, "rf3 not running on hv2")
    assert (info(c, "rf1")["lastnode"], info(c, "rf3")["lastnode"]) == ("hv3", "hv3")
    pinned_info = info(c, "rf2")
    assert (pinned_info["state"], pinned_info["node_autostart"]) == ("stop", True)
    assert running_on(c, pinned) == []
    # hv3 boots again; an operator readies it: its VMs come back, the pinned one starts.
    c.power_on("hv3")
    c.wait_nodes_running()
    assert node(c, "hv3")["domainstate"] == "flushed"
    assert "ready of hv3 done" in pvc(c, "node", "ready", "hv3", "--wait")
    for vm_uuid in (free, pinned, limited):
        wait_until(lambda u=vm_uuid: running_on(c, u) == ["hv3"], 30, f"{vm_uuid} not back")
    assert info(c, "rf2")["node_autostart"] is False


def test_a_refused_fence_recovers_nothing(fenced_cluster: LocalCluster) -> None:
    c = fenced_cluster
    vm_uuid = define_running(c, "rr1", "hv2")
    c.bmcs["hv2"].refuse_power_off()
    daemon = c.daemons["hv2"]
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGSTOP)  # looks dead, but is not powered off
    try:
        seen: list[dict[str, Any]] = []

        def fence_failed() -> bool:
            # Keep the very record that said so: the next attempt soon replaces it.
            seen.append(node(c, "hv2"))
            return bool(seen[-1]["maintenance"].get("status") == "failed")

        wait_until(fence_failed, 60, "the failed fence was not recorded")
        hv2 = seen[-1]
        assert hv2["daemonstate"] == "dead" and "FENCE FAILED" in hv2["maintenance"]["fence"]
        assert hv2["stats"]["fence_failed"]["count"] >= 1 and "fence" not in hv2["stats"]
        assert info(c, "rr1")["node"] == "hv2"  # nothing was recovered elsewhere
        assert running_on(c, vm_uuid) == ["hv2"]
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    # Alive again: the node says so, and its VM never ran anywhere else.
    wait_until(lambda: node(c, "hv2")["daemonstate"] == "run", 30, "hv2 not run again")
    assert running_on(c, vm_uuid) == ["hv2"]


def test_the_storm_guard_refuses_when_too_many_nodes_look_dead(
    fenced_cluster: LocalCluster,
) -> None:
    c = fenced_cluster
    for name in ("hv2", "hv3"):
        c.daemons[name].kill()
    log = c.daemons["hv1"].log_path
    wait_until(
        lambda: "refusing automatic fencing" in log.read_text(), 60, "no storm-guard refusal"
    )
    assert node(c, "hv2")["daemonstate"] == node(c, "hv3")["daemonstate"] == "run"
    assert "2 of 3 nodes look dead at once" in log.read_text()
