"""VM lifecycle on the real local cluster: real ZooKeeper, libvirtd hosts, QEMU guests, daemons."""

from __future__ import annotations

import contextlib
import os
import signal

import libvirt
import pytest

from tests.cluster.driver import BOOT_TIMEOUT, ClusterDriver
from tests.harness.zookeeper import wait_until

pytestmark = pytest.mark.cluster


def test_start_runs_the_guest_on_its_host(cluster: ClusterDriver) -> None:
    uuid = cluster.define("life1", "hv2")
    assert cluster.active_on(uuid) == []
    output = cluster.pvc("vm", "start", "life1", "--wait", "--wait-timeout", "60")
    assert "running on hv2" in output
    # libvirtd itself says so, and the guest prints on its serial console.
    cluster.wait_running_on(uuid, "hv2")
    cluster.wait_ticks("life1", after=0)
    assert cluster.console("life1").boots == ["life1"]
    node = cluster.pvc("node", "info", "hv2", "-o", "json")
    assert uuid in node


def test_shutdown_start_restart_stop(cluster: ClusterDriver) -> None:
    uuid = cluster.start_running("life2")
    # Shutdown: the guest handles the ACPI power button and powers itself off.
    assert "stopped" in cluster.pvc("vm", "shutdown", "life2", "--wait")
    assert cluster.active_on(uuid) == []
    assert cluster.console("life2").poweroffs == 1
    assert cluster.info("life2")["state"] == "stop"
    cluster.pvc("vm", "start", "life2", "--wait")
    cluster.wait_boots("life2", 2)
    # Restart: a new boot, same host.
    assert "running on hv1" in cluster.pvc("vm", "restart", "life2", "--wait")
    cluster.wait_boots("life2", 3)
    cluster.wait_running_on(uuid, "hv1")
    assert cluster.info("life2")["state"] == "start"
    cluster.pvc("vm", "stop", "life2", "--yes", "--wait")
    assert cluster.active_on(uuid) == []


def test_a_killed_qemu_is_started_again(cluster: ClusterDriver) -> None:
    uuid = cluster.start_running("crash1")
    pid = cluster.qemu_pid("crash1", "hv1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    cluster.wait_boots("crash1", 2)
    cluster.wait_running_on(uuid, "hv1")
    new_pid = cluster.qemu_pid("crash1", "hv1")
    assert new_pid is not None and new_pid != pid
    assert cluster.info("crash1")["state"] == "start"


def test_a_crash_loop_ends_in_fail_with_a_reason(cluster: ClusterDriver) -> None:
    # The fixture's budget is 2 restarts per 120 s: the third crash is final.
    uuid = cluster.start_running("crash2")
    for boot in (1, 2, 3):
        cluster.wait_boots("crash2", boot)
        pid = wait_until(
            lambda: cluster.qemu_pid("crash2", "hv1"), BOOT_TIMEOUT, "no QEMU for crash2"
        )
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda p=pid: cluster.qemu_pid("crash2", "hv1") != p, 10, "QEMU survived")
    wait_until(lambda: cluster.info("crash2")["state"] == "fail", 30, "crash2 never failed")
    assert "restart" in cluster.info("crash2")["failed_reason"]
    assert cluster.active_on(uuid) == []
    assert len(cluster.console("crash2").boots) == 3


def test_a_guest_powering_itself_off_is_recorded_as_stopped(cluster: ClusterDriver) -> None:
    uuid = cluster.start_running("self1")
    # The power button pressed behind the cluster's back (as a guest's own poweroff).
    # A press early in the boot can be lost (the guest's ACPI input may not be ready yet,
    # more so on a loaded machine): press again every few seconds until it powers off.
    host = cluster.cluster.hosts["hv1"]

    def recorded_stop() -> bool:
        if cluster.info("self1")["state"] == "stop":
            return True
        with host.connection() as conn, contextlib.suppress(libvirt.libvirtError):
            domain = conn.lookupByUUIDString(uuid)
            if domain.isActive():
                domain.shutdown()
        return False

    wait_until(recorded_stop, 45, "self1 not recorded stop", interval=3.0)
    assert cluster.console("self1").poweroffs >= 1  # it was the guest's own poweroff
    assert cluster.active_on(uuid) == []
    assert len(cluster.console("self1").boots) == 1  # not started again


def test_a_failed_start_sets_fail_with_libvirts_reason(cluster: ClusterDriver) -> None:
    uuid = cluster.define("broken1")
    xml_path = cluster.cluster.workdir / "broken1.xml"
    kernel = str(cluster.cluster.image.kernel)
    xml_path.write_text(xml_path.read_text().replace(kernel, "/nonexistent/vmlinuz"))
    cluster.pvc("vm", "modify", "broken1", str(xml_path))
    output = cluster.pvc("vm", "start", "broken1", "--wait", "--wait-timeout", "60", expect=1)
    assert "failed: start failed:" in output and "/nonexistent/vmlinuz" in output
    info = cluster.info("broken1")
    assert info["state"] == "fail" and "/nonexistent/vmlinuz" in info["failed_reason"]
    assert cluster.active_on(uuid) == []


def test_a_guest_kernel_panic_is_a_crash_and_it_is_started_again(cluster: ClusterDriver) -> None:
    uuid = cluster.start_running("panic1")
    host = cluster.cluster.hosts["hv1"]
    with host.connection() as conn:
        # The guest panics on an NMI; pvpanic tells QEMU; libvirt applies on_crash=destroy.
        conn.lookupByUUIDString(uuid).injectNMI()
    cluster.wait_boots("panic1", 2)
    cluster.wait_running_on(uuid, "hv1")
    log = cluster.cluster.daemons["hv1"].log_path.read_text()
    assert "vm 'panic1': start: crashed: restarting it" in log
    assert cluster.info("panic1")["state"] == "start"
