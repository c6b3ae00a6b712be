"""Migration on the real local cluster: live, its fallback, live-only, and never twice."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.cluster.driver import ClusterDriver, HostWatcher
from tests.harness.cluster import LocalCluster

pytestmark = pytest.mark.cluster


@contextlib.contextmanager
def migration_ports_blocked(cluster: LocalCluster, node: str) -> Iterator[None]:
    """Occupy every port of ``node``'s incoming-migration range, so live migration fails."""
    first, last = cluster.hosts[node].migration_ports
    sockets = []
    try:
        for port in range(first, last + 1):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # A finished migration may leave TIME_WAIT connections on the port; a listener
            # still blocks it (Linux refuses a second bind while one socket listens).
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            sockets.append(listener)
        yield
    finally:
        for listener in sockets:
            listener.close()


def test_live_migration_keeps_the_guest_running_and_never_on_two_hosts(
    cluster: ClusterDriver,
) -> None:
    uuid = cluster.start_running("mig1")
    before = cluster.wait_ticks("mig1", after=2)
    with HostWatcher(cluster, [uuid]) as watcher:
        output = cluster.pvc("vm", "migrate", "mig1", "--target", "hv2", "--wait")
        cluster.wait_running_on(uuid, "hv2")
    assert "running on hv2" in output and "failed" not in output
    # The same boot goes on counting on the new host: it was never restarted.
    after = cluster.wait_ticks("mig1", after=before + 2)
    console = cluster.console("mig1")
    assert len(console.boots) == 1 and after > before
    # At no sampled moment did the guest's CPUs run on two hosts.
    assert len(watcher.samples[uuid]) > 10
    watcher.check_never_twice()
    assert ["hv1"] in watcher.samples[uuid] and ["hv2"] in watcher.samples[uuid]
    info = cluster.info("mig1")
    assert (info["node"], info["lastnode"], info["state"]) == ("hv2", "hv1", "start")
    # And back home.
    assert "running on hv1" in cluster.pvc("vm", "unmigrate", "mig1", "--wait")
    cluster.wait_running_on(uuid, "hv1")
    assert cluster.info("mig1")["lastnode"] == ""
    assert len(cluster.console("mig1").boots) == 1


def test_failed_live_migration_falls_back_to_shutdown_and_start(cluster: ClusterDriver) -> None:
    uuid = cluster.start_running("mig2")
    with migration_ports_blocked(cluster.cluster, "hv3"):
        with HostWatcher(cluster, [uuid]) as watcher:
            output = cluster.pvc("vm", "migrate", "mig2", "--target", "hv3", "--wait")
    assert "running on hv3" in output and "live migration failed" in output
    cluster.wait_running_on(uuid, "hv3")
    cluster.wait_boots("mig2", 2)  # it was shut down and started again
    watcher.check_never_twice()
    info = cluster.info("mig2")
    assert (info["node"], info["lastnode"], info["state"]) == ("hv3", "hv1", "start")
    assert "shutdown and start" in info["failed_reason"]


def test_live_only_vm_stays_where_it_runs_when_live_migration_fails(
    cluster: ClusterDriver,
) -> None:
    uuid = cluster.start_running("mig3", "hv1", "--method", "live")
    with migration_ports_blocked(cluster.cluster, "hv2"):
        output = cluster.pvc("vm", "migrate", "mig3", "--target", "hv2", "--wait", expect=1)
    assert "still on hv1" in output
    info = cluster.info("mig3")
    assert (info["node"], info["lastnode"], info["state"]) == ("hv1", "", "start")
    assert "migration_method is live" in info["failed_reason"]
    assert cluster.running_on(uuid) == ["hv1"]
    assert len(cluster.console("mig3").boots) == 1  # never shut down
