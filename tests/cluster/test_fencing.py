"""Power loss, fencing and recovery on the real local cluster, with a BMC per node.

Each node has an OpenIPMI BMC simulator whose power-off SIGKILLs that node's daemon, its
libvirtd and every guest (the supervisor's whole tree), as a pulled plug would. Every
libvirtd is polled throughout: no VM may ever run on two hosts.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from tests.cluster.driver import ClusterDriver, HostWatcher
from tests.harness.cluster import LocalCluster
from tests.harness.zookeeper import wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def fencing_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("fc"),
        bmcs=True,
        daemon_settings={
            "fencing": {"intervals": 3, "rechecks": 2, "timeout": 5},
            "vm": {"shutdown_timeout": 10},
        },
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def driver(fencing_cluster: LocalCluster) -> Iterator[ClusterDriver]:
    driver = ClusterDriver(fencing_cluster)
    yield driver
    for name in fencing_cluster.node_names:
        node = json.loads(driver.pvc("node", "info", name, "-o", "json"))
        if node["daemonstate"] == "fenced" or not fencing_cluster.daemons[name].is_alive():
            fencing_cluster.power_on(name)
    fencing_cluster.wait_nodes_running()
    for name in fencing_cluster.node_names:
        if json.loads(driver.pvc("node", "info", name, "-o", "json"))["domainstate"] != "ready":
            driver.pvc("node", "ready", name, "--wait", "--wait-timeout", "120", expect=None)
    driver.remove_all()


def node_json(driver: ClusterDriver, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(driver.pvc("node", "info", name, "-o", "json"))
    return data


def test_a_node_powered_off_is_fenced_and_its_vms_run_elsewhere(driver: ClusterDriver) -> None:
    cluster = driver.cluster
    free = driver.start_running("pw1", "hv3")
    pinned = driver.start_running("pw2", "hv3", "--limit", "hv3")
    limited = driver.start_running("pw3", "hv3", "--limit", "hv2,hv3")
    with HostWatcher(driver, [free, pinned, limited]) as watcher:
        cluster.bmcs["hv3"].ipmitool("chassis", "power", "off")  # the plug is pulled
        wait_until(
            lambda: node_json(driver, "hv3")["domainstate"] == "flushed",
            90,
            "hv3 was not fenced and recovered",
        )
        wait_until(lambda: driver.running_on(free) in (["hv1"], ["hv2"]), 60, "pw1 not back")
        driver.wait_running_on(limited, "hv2")
        assert driver.active_on(pinned) == []  # limited to hv3: it waits
        assert driver.info("pw2")["node_autostart"] is True
        assert node_json(driver, "hv3")["daemonstate"] == "fenced"
        # hv3 boots again and is readied: its VMs come back, the pinned one starts.
        cluster.power_on("hv3")
        cluster.wait_nodes_running()
        driver.pvc("node", "ready", "hv3", "--wait", "--wait-timeout", "180")
        for vm_uuid in (free, pinned, limited):
            driver.wait_running_on(vm_uuid, "hv3")
    watcher.check_never_twice()


def test_a_frozen_daemons_node_is_fenced_and_never_leaves_a_second_copy(
    driver: ClusterDriver,
) -> None:
    cluster = driver.cluster
    frozen = driver.start_running("fz1", "hv2")
    daemon = cluster.daemons["hv2"]
    assert daemon.pid is not None
    with HostWatcher(driver, [frozen]) as watcher:
        # The daemon freezes; its guest keeps running until the BMC cuts the power.
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            wait_until(
                lambda: node_json(driver, "hv2")["daemonstate"] == "fenced",
                90,
                "hv2 was not fenced",
            )
        finally:
            if daemon.is_alive():  # a fence that failed would leave it frozen
                os.kill(daemon.pid, signal.SIGCONT)
        wait_until(lambda: driver.running_on(frozen) in (["hv1"], ["hv3"]), 60, "fz1 not back")
        assert not daemon.is_alive()  # the power-off took the frozen daemon down too
    watcher.check_never_twice()
