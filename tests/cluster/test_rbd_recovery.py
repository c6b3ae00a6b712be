"""RBD locks through the daemons, on a real single-host Ceph (fast-mode cluster).

A normal start never breaks a lock (the VM fails with the holder named); `pvc vm
flush-locks` clears a stopped VM's stale locks through its node daemon; fence recovery
clears a dead node's locks only after its power-off is confirmed, blocklisting the holder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.ceph import CephCluster
from tests.harness.cluster import LocalCluster
from tests.harness.zookeeper import wait_until

pytestmark = pytest.mark.cluster

PVC = str(Path(sys.executable).with_name("pvc"))


@pytest.fixture(scope="module")
def rbd_cluster(
    ceph_cluster: CephCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("rc"),
        mode="test",
        bmcs=True,
        daemon_settings={
            "fencing": {
                "intervals": 3,
                "rechecks": 2,
                "timeout": 5,
                "rbd_command": ["rbd", *ceph_cluster.cli_args],
            },
            "daemon": {"keepalive_interval": 1},
            "zookeeper": {"timeout": 3},
        },
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def pvc(cluster: LocalCluster, *args: str, expect: int | None = 0) -> str:
    env = {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts, "NO_COLOR": "1"}
    result = subprocess.run([PVC, *args], env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert expect is None or result.returncode == expect, output
    return output


def define(cluster: LocalCluster, name: str, node: str, image: str) -> str:
    path = cluster.workdir / f"{name}.xml"
    path.write_text(cluster.vm_xml(name, str(uuid.uuid4()), rbd_images=(image,)))
    pvc(cluster, "vm", "define", "--target", node, str(path))
    data: dict[str, Any] = json.loads(pvc(cluster, "vm", "info", name, "-o", "json"))
    assert data["rbd_list"] == [image]
    return str(data["uuid"])


def locks(ceph: CephCluster, image: str) -> list[dict[str, str]]:
    data: list[dict[str, str]] = json.loads(
        ceph.rbd("lock", "list", "--format", "json", image).stdout or "[]"
    )
    return data


def test_a_start_never_breaks_a_lock_and_flush_locks_clears_it(
    rbd_cluster: LocalCluster, ceph_cluster: CephCluster
) -> None:
    image = ceph_cluster.create_image("held1")
    define(rbd_cluster, "rl1", "hv1", image)
    ceph_cluster.rbd("lock", "add", image, "other-holder")  # a holder elsewhere
    output = pvc(rbd_cluster, "vm", "start", "rl1", "--wait", "--wait-timeout", "30", expect=1)
    assert "RBD lock held" in output and image in output and "flush-locks" in output
    assert len(locks(ceph_cluster, image)) == 1  # not broken
    output = pvc(rbd_cluster, "vm", "flush-locks", "rl1")
    assert "RBD lock flush done" in output
    assert locks(ceph_cluster, image) == []
    assert "running on hv1" in pvc(rbd_cluster, "vm", "start", "rl1", "--wait")
    # While it runs, a lock flush is refused before anything is asked of the daemon.
    assert "stop it before clearing" in pvc(rbd_cluster, "vm", "flush-locks", "rl1", expect=5)
    pvc(rbd_cluster, "vm", "stop", "rl1", "--yes", "--wait")


def test_fence_recovery_clears_the_dead_nodes_locks_after_the_fence(
    rbd_cluster: LocalCluster, ceph_cluster: CephCluster
) -> None:
    image = ceph_cluster.create_image("held2")
    vm_uuid = define(rbd_cluster, "rl2", "hv3", image)
    pvc(rbd_cluster, "vm", "start", "rl2", "--wait")
    # The VM's client on hv3 holds the image; then hv3 loses power.
    ceph_cluster.rbd("lock", "add", image, "hv3-qemu")
    holder = locks(ceph_cluster, image)[0]["address"]
    rbd_cluster.bmcs["hv3"].ipmitool("chassis", "power", "off")

    def recovered() -> bool:
        data = json.loads(pvc(rbd_cluster, "vm", "info", "rl2", "-o", "json"))
        return bool(data["node"] != "hv3" and data["state"] == "start")

    wait_until(recovered, 60, "rl2 was not recovered")
    assert locks(ceph_cluster, image) == []
    assert any(holder in entry for entry in ceph_cluster.blocklist())
    node = json.loads(pvc(rbd_cluster, "node", "info", "hv3", "-o", "json"))
    assert node["daemonstate"] == "fenced"
    entry = node["maintenance"]["vms"][vm_uuid]
    assert entry["outcome"] == "started"
    rbd_cluster.power_on("hv3")
    rbd_cluster.wait_nodes_running()
    pvc(rbd_cluster, "node", "ready", "hv3", "--wait")
    pvc(rbd_cluster, "vm", "stop", "rl2", "--yes", "--wait")
