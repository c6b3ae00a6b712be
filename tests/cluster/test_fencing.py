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
from typing import Any

import pytest

from pvc_common import schema
from pvc_common.node_ops import live_nodes
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


def test_a_refused_fence_recovers_nothing(driver: ClusterDriver) -> None:
    """hv2 looks dead but its BMC only pretends to power it off: its VM must stay its own.

    Placed before the frozen-daemon test, which fences hv2 for real: it also proves that
    hv2 and its BMC were restored.
    """
    cluster = driver.cluster
    refused = driver.start_running("rr1", "hv2")
    bmc = cluster.bmcs["hv2"]
    daemon = cluster.daemons["hv2"]
    assert daemon.pid is not None
    coordinators = {name: cluster.daemons[name].log_path for name in ("hv1", "hv3")}
    offsets = {name: path.stat().st_size for name, path in coordinators.items()}
    chassis_before = len(bmc.chassis_log())
    boots_before = len(driver.console("rr1").boots)

    def failed_fences() -> list[str]:
        """ERROR lines the coordinators logged for a failed fence of hv2 in this test."""
        lines = []
        for name, path in coordinators.items():
            with path.open("rb") as handle:
                handle.seek(offsets[name])
                text = handle.read().decode(errors="replace")
            lines += [
                line
                for line in text.splitlines()
                if " ERROR " in line and "node 'hv2': FENCE FAILED, nothing recovered" in line
            ]
        return lines

    def hv2_back() -> bool:
        with cluster.store() as store:
            live = "hv2" in live_nodes(store)
            fencing = store.exists(schema.fence_lock_path("hv2"))
        return live and not fencing and node_json(driver, "hv2")["daemonstate"] == "run"

    def stayed_on_hv2(watcher: HostWatcher) -> bool:
        """Fail at once if the watcher ever saw rr1 run on another host."""
        elsewhere = [hosts for hosts in watcher.samples[refused] if set(hosts) - {"hv2"}]
        assert not elsewhere, f"rr1 ran away from hv2: {elsewhere[:3]}"
        return True

    def failed_record() -> dict[str, Any] | None:
        """hv2's row once its maintenance record is a failed fence (between attempts)."""
        hv2: dict[str, Any] = json.loads(driver.pvc("node", "info", "hv2", "-o", "json"))
        return hv2 if hv2["maintenance"].get("status") == "failed" else None

    bmc.refuse_power_off()  # acknowledged, never done
    try:
        with HostWatcher(driver, [refused]) as watcher:
            os.kill(daemon.pid, signal.SIGSTOP)  # looks dead, but is not powered off
            try:
                # Several attempts (each waits fencing.timeout for an off that never
                # comes): a window of about half a minute with hv2 dead and unfenced.
                wait_until(
                    lambda: stayed_on_hv2(watcher) and len(failed_fences()) >= 3,
                    150,
                    "fewer than 3 failed fences",
                )
                hv2 = wait_until(
                    failed_record, 30, "the failed fence is not in hv2's maintenance record"
                )
                assert hv2["daemonstate"] == "dead"
                assert hv2["domainstate"] == "ready"  # no fence-flush: nothing recovered
                maintenance = hv2["maintenance"]
                assert maintenance["kind"] == "fence"
                assert maintenance["by"] in ("hv1", "hv3")
                assert maintenance["fence"].startswith("FENCE FAILED, nothing recovered: ")
                assert "accepted power off but still reports power on" in maintenance["fence"]
                assert maintenance["vms"] == {}
                # The BMC was really asked, and really did nothing.
                chassis = bmc.chassis_log()[chassis_before:]
                assert len([line for line in chassis if "power off refused" in line]) >= 3
                assert bmc.power_is_on()
                # The VM still belongs to hv2, runs there only, and its guest never stopped.
                vm = driver.info("rr1")
                assert (vm["node"], vm["state"]) == ("hv2", "start"), vm
                assert driver.active_on(refused) == ["hv2"]
                last = driver.console("rr1").last_tick
                assert last is not None
                driver.wait_ticks("rr1", after=last)
                assert daemon.is_alive()  # frozen, not killed
            finally:
                os.kill(daemon.pid, signal.SIGCONT)
            # Alive again: hv2 marks itself run, and no coordinator is fencing it any more
            # (a fence started just before must finish, refused, before power-off is
            # allowed again).
            wait_until(hv2_back, 60, "hv2 not run and live again")
            assert node_json(driver, "hv2")["domainstate"] == "ready"
            assert driver.running_on(refused) == ["hv2"]
            assert driver.info("rr1")["node"] == "hv2"
    finally:
        bmc.refuse_power_off(False)
    watcher.check_never_twice()
    assert stayed_on_hv2(watcher)
    assert len(driver.console("rr1").boots) == boots_before  # never restarted
    cluster.wait_nodes_running()


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
