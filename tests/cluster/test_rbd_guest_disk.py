"""A guest's own disk on RBD, through QEMU's rbd driver, across a power loss and fence.

The qemu-mode cluster runs the disk variant of the tiny guest (tests/harness/guest.py):
its disk is a ``<disk type='network'><source protocol='rbd'>`` opened by QEMU's own
librbd (Debian's qemu-block-extra) with the harness Ceph's ceph.conf and cephx keyring.
At every boot the guest reads a counter from the disk, writes it back plus one and
prints ``pvc-guest: disk write N``; that write makes librbd in QEMU take the image's
exclusive lock (opening the image alone takes none), so the lock's holder is the QEMU
process of the node the VM runs on.

When that node loses power (its BMC SIGKILLs the daemon, libvirtd and QEMU), the lock
stays with the dead client until the fence is confirmed; fence recovery then breaks it
(blocklisting the dead client) and starts the VM on another node, whose new QEMU takes
the lock and reads what the first instance wrote. Every libvirtd is polled throughout:
the VM never runs twice.
"""

from __future__ import annotations

import json
import time
import uuid as uuid_module
from collections.abc import Iterator
from typing import Any

import pytest

from pvc_common.snapshot import load_nodes
from tests.cluster.driver import ClusterDriver, HostWatcher
from tests.harness.ceph import CephCluster
from tests.harness.cluster import LocalCluster
from tests.harness.zookeeper import wait_until

pytestmark = pytest.mark.cluster

#: The guest boots in a few seconds; its disk write needs the Ceph connection as well.
DISK_WRITE_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def rbd_qemu_cluster(
    ceph_cluster: CephCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("rq"),
        mode="qemu",
        bmcs=True,
        daemon_settings={
            "fencing": {
                "intervals": 3,
                "rechecks": 2,
                "timeout": 5,
                "rbd_command": ["rbd", *ceph_cluster.cli_args],
            },
            "vm": {"shutdown_timeout": 10},
        },
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()  # before ceph_cluster's teardown: no QEMU outlives its Ceph


@pytest.fixture
def driver(rbd_qemu_cluster: LocalCluster) -> Iterator[ClusterDriver]:
    driver = ClusterDriver(rbd_qemu_cluster)
    yield driver
    for name in rbd_qemu_cluster.node_names:
        if not rbd_qemu_cluster.daemons[name].is_alive():
            rbd_qemu_cluster.power_on(name)
    rbd_qemu_cluster.wait_nodes_running()
    driver.remove_all()


def locks(ceph: CephCluster, image: str) -> list[dict[str, str]]:
    data: list[dict[str, str]] = json.loads(
        ceph.rbd("lock", "list", "--format", "json", image).stdout or "[]"
    )
    return data


def exclusive_lock(ceph: CephCluster, image: str) -> dict[str, str] | None:
    """The image's one lock if it is librbd's exclusive lock ('auto <cookie>'), else None."""
    held = locks(ceph, image)
    if len(held) == 1 and held[0]["id"].startswith("auto "):
        return held[0]
    return None


def define_rbd_vm(
    driver: ClusterDriver, ceph: CephCluster, name: str, node: str, image: str
) -> str:
    cluster = driver.cluster
    vm_uuid = str(uuid_module.uuid4())
    xml_path = cluster.workdir / f"{name}.xml"
    xml_path.write_text(
        cluster.vm_xml(
            name,
            vm_uuid,
            rbd_images=(image,),
            ceph_conf=ceph.conf_path,
            ceph_monitor=("127.0.0.1", ceph.mon_ports[1]),  # the mon's msgr v1 port
        )
    )
    driver.console_path(name).unlink(missing_ok=True)
    driver.pvc("vm", "define", "--target", node, str(xml_path))
    driver.vms[name] = vm_uuid
    assert driver.info(name)["rbd_list"] == [image]
    return vm_uuid


def qemu_is_ceph_client(ceph: CephCluster, driver: ClusterDriver, name: str, node: str) -> bool:
    """Whether the VM's QEMU on ``node`` runs a librados client of this cluster.

    The harness ceph.conf gives every client an admin socket named after its PID.
    """
    pid = driver.qemu_pid(name, node)
    return pid is not None and (ceph.run_dir / f"client.admin.{pid}.asok").exists()


def test_the_dead_nodes_qemu_keeps_the_lock_until_the_fence_then_the_new_instance_holds_it(
    driver: ClusterDriver, ceph_cluster: CephCluster
) -> None:
    cluster = driver.cluster
    image = ceph_cluster.create_image("guestdisk1")
    assert (
        "exclusive-lock"
        in json.loads(ceph_cluster.rbd("info", "--format", "json", image).stdout)["features"]
    )
    vm_uuid = define_rbd_vm(driver, ceph_cluster, "gd1", "hv3", image)
    driver.pvc("vm", "start", "gd1", "--wait", "--wait-timeout", "60")
    driver.wait_running_on(vm_uuid, "hv3")

    # The guest's boot-time write makes hv3's QEMU take the exclusive lock.
    wait_until(
        lambda: driver.console("gd1").disk_writes == [1],
        DISK_WRITE_TIMEOUT,
        "gd1 did not write to its RBD disk",
    )
    old = wait_until(
        lambda: exclusive_lock(ceph_cluster, image), 30, f"no exclusive lock on {image}"
    )
    assert qemu_is_ceph_client(ceph_cluster, driver, "gd1", "hv3")
    assert old["address"] not in ceph_cluster.blocklist()

    samples: list[tuple[str, list[dict[str, str]]]] = []  # (hv3 daemon state, locks before)
    with HostWatcher(driver, [vm_uuid]) as watcher, cluster.store() as store:
        cluster.bmcs["hv3"].ipmitool("chassis", "power", "off")  # the plug is pulled
        powered_off = time.monotonic()

        def fenced() -> bool:
            # Locks first, then the state: a state read as not yet fenced was not fenced
            # when the locks were read either.
            held = locks(ceph_cluster, image)
            state = {node.name: node.daemonstate for node in load_nodes(store)}["hv3"]
            samples.append((state, held))
            return state not in ("run", "dead")

        wait_until(fenced, 90, "hv3 was not fenced", interval=0.1)
        fence_seconds = time.monotonic() - powered_off

        def recovered() -> dict[str, Any] | None:
            info = driver.info("gd1")
            return info if info["node"] != "hv3" and info["state"] == "start" else None

        info = wait_until(recovered, 60, "gd1 was not recovered")
        new_node = info["node"]
        assert new_node in ("hv1", "hv2")
        driver.wait_running_on(vm_uuid, new_node)
        # The new instance boots, reads the first instance's write and writes again.
        wait_until(
            lambda: driver.console("gd1").disk_writes == [1, 2],
            DISK_WRITE_TIMEOUT,
            f"gd1 on {new_node} did not write to its RBD disk",
        )
        new = wait_until(
            lambda: exclusive_lock(ceph_cluster, image), 30, f"no new exclusive lock on {image}"
        )
        assert driver.running_on(vm_uuid) == [new_node]

    # Until the fence was confirmed, the dead QEMU's lock stayed exactly as it was.
    before = [held for state, held in samples if state in ("run", "dead")]
    assert len(before) >= 3, f"too few samples before the fence ({fence_seconds:.1f} s)"
    assert all(held == [old] for held in before), [h for h in before if h != [old]][:3]
    # Then recovery broke it, blocklisting the dead client, and the new QEMU took it.
    assert old["address"] in ceph_cluster.blocklist()
    assert new["locker"] != old["locker"] and new["address"] != old["address"]
    assert new["address"] not in ceph_cluster.blocklist()
    assert qemu_is_ceph_client(ceph_cluster, driver, "gd1", new_node)
    node = json.loads(driver.pvc("node", "info", "hv3", "-o", "json"))
    assert node["daemonstate"] == "fenced"
    entry = node["maintenance"]["vms"][vm_uuid]
    assert entry["outcome"] == "started" and entry["target"] == new_node
    assert driver.console("gd1").boots == ["gd1", "gd1"]  # one boot per instance
    watcher.check_never_twice()
