"""The ZooKeeper test harness itself, exercised against real servers."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests.harness.zookeeper import (
    ZooKeeperEnsemble,
    ZooKeeperError,
    ZooKeeperServer,
    ZooKeeperUnavailable,
    pid_is_running,
    port_accepts_connections,
    wait_until,
)


@contextmanager
def kazoo(hosts: str) -> Iterator[KazooClient]:
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=15.0)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def test_zk_hosts_gives_isolated_chroots(
    zk_hosts: str, zk_hosts_factory: Callable[[], str], zookeeper_server: ZooKeeperServer
) -> None:
    other_hosts = zk_hosts_factory()
    assert zk_hosts != other_hosts
    for hosts in (zk_hosts, other_hosts):
        assert hosts.startswith(f"{zookeeper_server.hosts}/t-")

    with kazoo(zk_hosts) as one, kazoo(other_hosts) as other:
        one.create("/pvc/nodes/hv1", b"ready", makepath=True)
        assert one.get("/pvc/nodes/hv1")[0] == b"ready"
        assert other.exists("/pvc") is None
        other.create("/pvc", b"other")
        assert one.get("/pvc")[0] == b""

    # Both trees are real nodes under the server's root.
    with kazoo(zookeeper_server.hosts) as root:
        one_path = "/" + zk_hosts.partition("/")[2]
        assert root.get(f"{one_path}/pvc/nodes/hv1")[0] == b"ready"
        assert root.exists("/" + other_hosts.partition("/")[2]) is not None


def test_server_stop_is_by_pid_and_frees_the_port(tmp_path: Path) -> None:
    server = ZooKeeperServer(tmp_path / "zk")
    server.start()
    try:
        assert server.wait_serving() == "standalone"
        assert server.mode() == "standalone"
        assert server.hosts == f"127.0.0.1:{server.client_port}"
        pid = server.pid
        assert pid is not None and pid_is_running(pid) and server.is_alive()
    finally:
        returncode = server.stop()

    assert returncode is not None  # it was running and has been reaped
    assert not pid_is_running(pid)
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie
    assert not server.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.client_port), timeout=2)
    assert server.stop() is None  # idempotent


def test_server_pause_resume_kill_and_restart(tmp_path: Path) -> None:
    server = ZooKeeperServer(tmp_path / "zk")
    try:
        server.start()
        server.wait_serving()

        server.pause()
        # The kernel still accepts connections, but a frozen JVM never answers.
        assert port_accepts_connections(server.client_port)
        assert server.mode(timeout=0.5) is None
        server.resume()
        assert wait_until(server.mode, 10, "server did not answer after resume") == "standalone"

        first_pid = server.pid
        assert server.kill() == -9
        assert first_pid is not None and not pid_is_running(first_pid)
        assert not port_accepts_connections(server.client_port)

        # Same port and data directory after a restart.
        server.start()
        assert server.pid != first_pid
        assert server.wait_serving() == "standalone"
    finally:
        server.stop()


def test_wait_serving_reports_a_server_that_died(tmp_path: Path) -> None:
    server = ZooKeeperServer(tmp_path / "zk", extra_config={"tickTime": "not-a-number"})
    server.start()
    try:
        with pytest.raises(ZooKeeperError, match="exited with code") as excinfo:
            server.wait_serving(timeout=30)
        assert "zookeeper.log" in str(excinfo.value)
    finally:
        server.stop()


def test_missing_jars_fail_early_with_a_hint(tmp_path: Path) -> None:
    server = ZooKeeperServer(tmp_path / "zk", java_dir=tmp_path / "no-jars-here")
    with pytest.raises(ZooKeeperUnavailable, match="install Debian's zookeeper package"):
        server.start()
    assert server.pid is None


@pytest.mark.ensemble
def test_ensemble_elects_exactly_one_leader(zookeeper_ensemble: ZooKeeperEnsemble) -> None:
    assert len(zookeeper_ensemble) == 3
    assert len(set(zookeeper_ensemble.hosts.split(","))) == 3
    modes = zookeeper_ensemble.modes()
    assert sorted(mode or "" for mode in modes) == ["follower", "follower", "leader"]
    leader = zookeeper_ensemble.leader()
    assert leader is not None and modes[leader] == "leader"
    assert zookeeper_ensemble.member(leader).mode() == "leader"


@pytest.mark.ensemble
def test_ensemble_survives_leader_crash(zookeeper_ensemble: ZooKeeperEnsemble) -> None:
    with kazoo(zookeeper_ensemble.hosts) as client:
        client.create("/before-crash", b"kept", makepath=True)

    old_leader = zookeeper_ensemble.leader()
    assert old_leader is not None
    crashed = zookeeper_ensemble.member(old_leader)
    crashed_pid = crashed.pid
    crashed.kill()
    assert crashed_pid is not None and not pid_is_running(crashed_pid)
    survivors = [i for i in range(len(zookeeper_ensemble)) if i != old_leader]

    def new_leader() -> int | None:
        modes = {i: zookeeper_ensemble.member(i).mode() for i in survivors}
        if sorted(mode or "" for mode in modes.values()) == ["follower", "leader"]:
            return next(i for i, mode in modes.items() if mode == "leader")
        return None

    leader = wait_until(new_leader, 30, "survivors did not elect a new leader")
    assert leader in survivors
    assert zookeeper_ensemble.leader() == leader
    assert zookeeper_ensemble.wait_leader(timeout=5) == leader

    with kazoo(zookeeper_ensemble.hosts) as client:
        assert client.get("/before-crash")[0] == b"kept"
        client.create("/after-crash", b"written")
