"""RBD locks on a real Ceph cluster (one mon + one memstore OSD from tests/harness/ceph.py).

The same :class:`pvc_common.storage.RbdLocks` code serves fence recovery, ``pvc vm
flush-locks`` and the check before a normal start; these tests run it against real
``rbd``. All local clients share 127.0.0.1, so a holder is told apart by the nonce in its
address (``127.0.0.1:0/NONCE``), which is also what breaking a lock blocklists.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pvc_common.errors import NotFound
from pvc_common.storage import RbdCommand, RbdLock, RbdLocks
from tests.harness.ceph import CephCluster
from tests.harness.zookeeper import wait_until

pytestmark = pytest.mark.cluster

#: What librbd fails I/O with once its client is blocklisted (ESHUTDOWN).
ESHUTDOWN = 108


@pytest.fixture
def locks(ceph_cluster: CephCluster) -> RbdLocks:
    """The production lock code, pointed at the test cluster with --conf."""
    return RbdLocks(args=ceph_cluster.cli_args, env=ceph_cluster.env, timeout=30.0)


def add_lock(ceph: CephCluster, image: str, lock_id: str) -> None:
    """Take a lock from a separate client process, which then exits (a dead holder)."""
    ceph.rbd("lock", "add", image, lock_id)


def test_start_time_is_small(ceph_cluster: CephCluster) -> None:
    assert ceph_cluster.start_seconds is not None
    assert ceph_cluster.start_seconds < 15, "one mon + memstore OSD should be up in ~1 s"


def test_list_and_clear_a_lock_blocklists_the_holder(
    ceph_cluster: CephCluster, locks: RbdLocks
) -> None:
    image = ceph_cluster.create_image("listed")
    assert locks.list_locks(image) == []
    add_lock(ceph_cluster, image, "pvc-test")

    [lock] = locks.list_locks(image)
    assert (lock.image, lock.lock_id) == (image, "pvc-test")
    assert lock.locker.startswith("client.")
    assert lock.host == "127.0.0.1" and "/" in lock.address  # address with its nonce
    assert not lock.is_exclusive_lock

    [outcome] = locks.clear_locks([image])
    assert (outcome.status, outcome.cleared) == ("cleared", (lock,))
    assert outcome.message == f"{image}: cleared 1 lock ({lock.locker} at {lock.address})"
    assert locks.list_locks(image) == []
    # rbd's default blocklisting on break: the holder can never write again.
    assert lock.address in ceph_cluster.blocklist()
    # Breaking it again finds nothing: already gone is not an error.
    assert locks.remove_lock(lock) is False


def test_clear_locks_per_image_outcomes(ceph_cluster: CephCluster, locks: RbdLocks) -> None:
    locked = ceph_cluster.create_image("mixed-locked")
    free = ceph_cluster.create_image("mixed-free")
    add_lock(ceph_cluster, locked, "a")
    missing = "rbd/mixed-missing"

    outcomes = locks.clear_locks([missing, locked, free, "nopool/x"])

    assert [(o.image, o.status) for o in outcomes] == [
        (missing, "error"),
        (locked, "cleared"),
        (free, "none"),
        ("nopool/x", "error"),
    ]
    assert outcomes[0].reason.startswith(f"RBD image {missing} does not exist (rbd: error opening")
    assert outcomes[3].reason.startswith("RBD image nopool/x does not exist")
    assert all("\n" not in o.message for o in outcomes)
    assert locks.list_locks(locked) == []
    with pytest.raises(NotFound):
        locks.list_locks(missing)


def test_held_by_others_reports_without_breaking(
    ceph_cluster: CephCluster, locks: RbdLocks
) -> None:
    held_image = ceph_cluster.create_image("start-held")
    free_image = ceph_cluster.create_image("start-free")
    add_lock(ceph_cluster, held_image, "other-node")

    [held] = locks.held_by_others([held_image, free_image])
    assert (held.image, held.lock_id) == (held_image, "other-node")
    assert locks.list_locks(held_image) == [held]  # still there: nothing was broken
    assert held.address not in ceph_cluster.blocklist()
    # Every local client is on 127.0.0.1: naming it as "ours" leaves nothing.
    assert locks.held_by_others([held_image], own_hosts={"127.0.0.1"}) == []

    locks.clear_locks([held_image])
    assert locks.held_by_others([held_image, free_image]) == []


def test_breaking_a_live_writers_lock_fences_it(
    ceph_cluster: CephCluster, locks: RbdLocks, tmp_path: Path
) -> None:
    """End to end: a live librbd writer holding the exclusive lock is cut off at once.

    ``rbd bench`` stands in for the QEMU of a fenced node that still reaches Ceph. After
    the lock is cleared its writes fail with ESHUTDOWN (it is blocklisted), and a new
    writer - the VM restarted elsewhere - gets the image right away.
    """
    image = ceph_cluster.create_image("fenced")
    log = tmp_path / "bench.log"
    with log.open("wb") as out:
        writer = subprocess.Popen(
            ["rbd", *ceph_cluster.cli_args, "bench", "--io-type", "write", "--io-size", "4K",
             "--io-threads", "1", "--io-pattern", "rand", "--io-total", "100G", image],
            env=ceph_cluster.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def exclusive_lock() -> RbdLock | None:
            assert writer.poll() is None, log.read_text()
            held = locks.held_by_others([image])
            return held[0] if held and held[0].is_exclusive_lock else None

        lock = wait_until(exclusive_lock, 20.0, "rbd bench did not take the exclusive lock")

        started = time.monotonic()
        [outcome] = locks.clear_locks([image])
        assert outcome.cleared == (lock,)
        code = writer.wait(timeout=20.0)
        cut_off = time.monotonic() - started
        assert code == ESHUTDOWN, log.read_text()
        assert "(108) Cannot send after transport endpoint shutdown" in log.read_text()
        assert lock.address in ceph_cluster.blocklist()
        print(f"writer cut off {cut_off:.2f} s after clear_locks started")

        # The new holder writes without waiting out the dead one's ~30 s watch timeout.
        started = time.monotonic()
        ceph_cluster.rbd("bench", "--io-type", "write", "--io-total", "1M", image, timeout=20.0)
        assert time.monotonic() - started < 10.0
    finally:
        if writer.poll() is None:
            writer.kill()  # by our Popen handle, i.e. by PID
        writer.wait()


def test_volume_removal_uses_the_same_runner(ceph_cluster: CephCluster) -> None:
    """``pvc vm remove``'s RbdCommand on real rbd: deletes, and a missing volume is fine."""
    remover = RbdCommand(args=ceph_cluster.cli_args, env=ceph_cluster.env, timeout=60.0)
    image = ceph_cluster.create_image("removed")
    remover.remove(image)
    remover.remove(image)  # already gone
    assert "removed" not in ceph_cluster.rbd("ls", "rbd").stdout.split()
