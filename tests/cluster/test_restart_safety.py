"""Daemon and ZooKeeper faults never touch running guests."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pvc_common import schema
from pvc_common.snapshot import load_node
from tests.cluster.driver import ClusterDriver
from tests.harness.zookeeper import ZooKeeperEnsemble, wait_until

pytestmark = pytest.mark.cluster


def keepalive_of(cluster: ClusterDriver, node: str) -> int:
    with cluster.cluster.store() as store:
        return load_node(store, node).keepalive


def wait_keepalives(cluster: ClusterDriver, node: str, count: int = 2) -> None:
    """Wait until ``node``'s daemon has written ``count`` more keepalives (1 s apart)."""
    start = keepalive_of(cluster, node)
    wait_until(
        lambda: keepalive_of(cluster, node) >= start + count,
        30,
        f"{node} wrote no keepalive",
        interval=0.25,
    )


def liveness_exists(cluster: ClusterDriver, node: str) -> bool:
    with cluster.cluster.store() as store:
        return store.exists(schema.liveness_path(node))


def test_kill_9_of_the_daemon_and_a_restart_leave_every_guest_untouched(
    cluster: ClusterDriver,
) -> None:
    first = cluster.start_running("safe1", "hv1")
    second = cluster.start_running("safe2", "hv1")
    pids = {name: cluster.qemu_pid(name, "hv1") for name in ("safe1", "safe2")}
    daemon = cluster.cluster.daemons["hv1"]
    daemon.kill()
    time.sleep(0.5)  # nothing should happen; give it a chance to go wrong
    assert cluster.running_on(first) == ["hv1"] and cluster.running_on(second) == ["hv1"]
    daemon.start()
    cluster.cluster.wait_nodes_running()
    wait_keepalives(cluster, "hv1")  # several reconcile passes have run by now
    assert {name: cluster.qemu_pid(name, "hv1") for name in pids} == pids
    assert len(cluster.console("safe1").boots) == len(cluster.console("safe2").boots) == 1
    assert liveness_exists(cluster, "hv1")
    # The adopted guests are managed again: a stop is carried out.
    cluster.pvc("vm", "stop", "safe2", "--yes", "--wait")
    assert cluster.active_on(second) == []


def test_a_clean_daemon_stop_records_it_and_leaves_guests_running(cluster: ClusterDriver) -> None:
    uuid = cluster.start_running("safe3", "hv2")
    pid = cluster.qemu_pid("safe3", "hv2")
    cluster.cluster.daemons["hv2"].stop()
    info = cluster.pvc("node", "info", "hv2", "-o", "json")
    assert '"daemonstate": "stop"' in info
    assert not liveness_exists(cluster, "hv2")
    assert cluster.running_on(uuid) == ["hv2"] and cluster.qemu_pid("safe3", "hv2") == pid
    cluster.cluster.daemons["hv2"].start()
    cluster.cluster.wait_nodes_running()
    wait_keepalives(cluster, "hv2")
    assert cluster.qemu_pid("safe3", "hv2") == pid


def test_a_zookeeper_member_dying_is_a_non_event(cluster: ClusterDriver) -> None:
    ensemble = cluster.cluster.zookeeper
    assert isinstance(ensemble, ZooKeeperEnsemble)
    uuid = cluster.start_running("safe4", "hv3")
    pid = cluster.qemu_pid("safe4", "hv3")
    leader = ensemble.wait_leader()
    ensemble.member(leader).kill()
    try:
        for node in ("hv1", "hv2", "hv3"):
            wait_keepalives(cluster, node)
        assert cluster.qemu_pid("safe4", "hv3") == pid
        assert cluster.running_on(uuid) == ["hv3"]
        # The daemons still act: a restart is carried out through the remaining quorum.
        cluster.pvc("vm", "restart", "safe4", "--wait")
        cluster.wait_boots("safe4", 2)
    finally:
        ensemble.member(leader).start()
        ensemble.wait_serving()


def test_while_zookeeper_is_unreachable_nothing_happens_then_it_resumes(
    cluster: ClusterDriver,
) -> None:
    ensemble = cluster.cluster.zookeeper
    assert isinstance(ensemble, ZooKeeperEnsemble)
    uuid = cluster.start_running("safe5", "hv1")
    pid = cluster.qemu_pid("safe5", "hv1")
    for member in ensemble:
        member.pause()
    try:
        # Longer than the daemons' 5 s session timeout: they see no truth at all.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert cluster.qemu_pid("safe5", "hv1") == pid
            time.sleep(0.5)
    finally:
        for member in ensemble:
            member.resume()
    ensemble.wait_serving()
    for node in ("hv1", "hv2", "hv3"):
        wait_keepalives(cluster, node)
    wait_until(lambda: liveness_exists(cluster, "hv1"), 30, "hv1's liveness znode not back")
    assert cluster.qemu_pid("safe5", "hv1") == pid and cluster.running_on(uuid) == ["hv1"]
    cluster.pvc("vm", "stop", "safe5", "--yes", "--wait")
    assert cluster.active_on(uuid) == []


def test_an_expired_session_is_replaced_and_the_guests_stay(cluster: ClusterDriver) -> None:
    uuid = cluster.start_running("safe6", "hv2")
    pid = cluster.qemu_pid("safe6", "hv2")
    daemon = cluster.cluster.daemons["hv2"]
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGSTOP)  # a frozen daemon: ZooKeeper expires its session
    try:
        wait_until(lambda: not liveness_exists(cluster, "hv2"), 30, "hv2's session never expired")
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    wait_until(lambda: liveness_exists(cluster, "hv2"), 30, "hv2 did not claim liveness again")
    wait_keepalives(cluster, "hv2")
    assert cluster.qemu_pid("safe6", "hv2") == pid and cluster.running_on(uuid) == ["hv2"]
    cluster.pvc("vm", "stop", "safe6", "--yes", "--wait")
    assert cluster.active_on(uuid) == []


def test_a_libvirtd_restart_keeps_the_node_alive_and_the_guests_running(
    cluster: ClusterDriver,
) -> None:
    uuid = cluster.start_running("safe7", "hv3")
    pid = cluster.qemu_pid("safe7", "hv3")
    host = cluster.cluster.hosts["hv3"]
    host.kill()  # libvirtd dies; its guests do not
    try:
        wait_keepalives(cluster, "hv3")  # the daemon still says it is alive
        assert cluster.qemu_pid("safe7", "hv3") == pid
        log = cluster.cluster.daemons["hv3"].log_path.read_text()
        assert "libvirt unavailable, keepalive only" in log
    finally:
        host.start()
        host.wait_ready()
    cluster.wait_running_on(uuid, "hv3")
    assert cluster.qemu_pid("safe7", "hv3") == pid
    # The daemon reconnected: it acts on the guest again.
    cluster.pvc("vm", "restart", "safe7", "--wait")
    cluster.wait_boots("safe7", 2)
