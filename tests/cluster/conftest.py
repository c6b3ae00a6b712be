"""Fixtures for tests on real libvirtd hosts running the tiny QEMU guest.

The logic lives in tests/harness/hypervisor.py and tests/harness/guest.py (shared with
scripts); this file maps it onto pytest scopes and makes sure every host a test starts
is stopped, guests included, whatever the test's outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.cluster.driver import ClusterDriver
from tests.harness.cluster import LocalCluster
from tests.harness.guest import DEFAULT_CACHE_DIR, GuestImage, build_guest_image
from tests.harness.hypervisor import DEFAULT_CAPABILITY_CACHE, LibvirtHost

#: Make a started, ready host: ``host_factory("hv1")`` (keyword arguments go to
#: LibvirtHost). Its files are under a short per-test directory (unix socket paths are
#: limited to 107 bytes).
HostFactory = Callable[..., LibvirtHost]


@pytest.fixture(scope="session", autouse=True)
def _quiet_libvirt() -> None:
    """libvirt-python prints every error to stderr by default; exceptions carry them."""
    libvirt.registerErrorHandler(lambda *args: None, None)


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The guest kernel and initramfs, built once (and cached across runs in .cache/)."""
    return build_guest_image(DEFAULT_CACHE_DIR)


@pytest.fixture(scope="session")
def capability_cache() -> Path:
    """QEMU capability cache shared by all hosts (and runs): only the first start probes."""
    return DEFAULT_CAPABILITY_CACHE


@pytest.fixture
def host_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short directory for one test's hosts and console logs."""
    return tmp_path_factory.mktemp("hv")


@pytest.fixture
def host_factory(host_workdir: Path, capability_cache: Path) -> Iterator[HostFactory]:
    """Start libvirtd hosts on demand; all of them are stopped (guests too) at teardown."""
    hosts: list[LibvirtHost] = []

    def make(name: str, **kwargs: Any) -> LibvirtHost:
        kwargs.setdefault("capability_cache", capability_cache)
        host = LibvirtHost(host_workdir, name, **kwargs)
        hosts.append(host)
        host.start()
        host.wait_ready()
        return host

    yield make
    errors: list[BaseException] = []
    for host in reversed(hosts):
        try:
            host.stop()
        except Exception as exc:  # stop the others anyway, then report
            errors.append(exc)
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------------------
# The local cluster (the same tooling as `make cluster`), shared by the daemon tests


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """ZooKeeper (3 members), hosts hv1..hv3 with libvirtd, and a pvcnoded on each.

    Tests share it: each defines its own VMs (a unique name) and removes them at the end,
    and a test that stops a daemon or a ZooKeeper member brings it back.
    """
    cluster = LocalCluster(
        tmp_path_factory.mktemp("lc"),
        zookeeper_members=3,
        # Short timeouts keep fault tests fast; a small budget makes crash loops short.
        daemon_settings={
            "vm": {"shutdown_timeout": 10, "restart_budget": 2, "restart_window": 120},
            "migration": {"attempts": 1, "timeout": 30},
        },
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(local_cluster: LocalCluster) -> Iterator[ClusterDriver]:
    """A driver for one test: runs `pvc`, reads libvirt and cleans the test's VMs up."""
    driver = ClusterDriver(local_cluster)
    for daemon in local_cluster.daemons.values():
        if not daemon.is_alive():
            daemon.start()
    local_cluster.wait_nodes_running()
    yield driver
    driver.remove_all()


# --------------------------------------------------------------------------------------
# Ceph for RBD lock tests (tests/harness/ceph.py): one mon + one memstore OSD, ~1.3 s

from tests.harness.ceph import CephCluster  # noqa: E402


@pytest.fixture(scope="module")
def ceph_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    """A Ceph cluster with pool ``rbd``, shared by one test module and always stopped.

    Module scope: starting one takes about a second, and tests keep apart by using their
    own image names. The harness also stops it at exit and gives the daemons a
    parent-death signal, so an aborted run leaves no daemon behind.
    """
    cluster = CephCluster(tmp_path_factory.mktemp("ceph"))
    try:
        cluster.start()
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------------------
# Simulated BMCs (OpenIPMI's ipmi_sim on loopback) for the fencing tests
# (tests/harness/bmc.py; ready in ~0.1 s each)

from tests.harness.bmc import BmcSimulator  # noqa: E402

#: Make a started, ready simulated BMC: ``bmc_factory("hv1")`` (keyword arguments go to
#: BmcSimulator).
BmcFactory = Callable[..., BmcSimulator]


@pytest.fixture
def bmc_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BmcFactory]:
    """Start simulated BMCs on demand; all of them are stopped (paused ones too) at teardown.

    The processes a test lists on a BMC's machine (``set_power_pids``) remain the test's
    to clean up.
    """
    workdir = tmp_path_factory.mktemp("bmc")
    bmcs: list[BmcSimulator] = []

    def make(name: str = "hv1", **kwargs: Any) -> BmcSimulator:
        bmc = BmcSimulator(workdir, name, **kwargs)
        bmcs.append(bmc)
        bmc.start()
        bmc.wait_ready()
        return bmc

    yield make
    errors: list[BaseException] = []
    for bmc in reversed(bmcs):
        try:
            bmc.stop()
        except Exception as exc:  # stop the others anyway, then report
            errors.append(exc)
    if errors:
        raise errors[0]
