"""The local cluster's fast mode: real ZooKeeper and daemons, libvirt's test driver.

This is the mode for machines without QEMU; it also runs the daemons' reconcile logic
end to end in well under a minute. (Test-driver VMs live inside each daemon's process,
so these checks read the daemons' runningdomains; the cluster tests ask real libvirtds.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvc_common import schema
from pvc_common.mutations import update_vm
from pvc_common.snapshot import find_vm
from tests.harness.cluster import LocalCluster
from tests.harness.zookeeper import find_free_port, pid_is_running, wait_until

PVC = str(Path(sys.executable).with_name("pvc"))


@pytest.fixture(scope="module")
def fast_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("fast"), mode="test")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def pvc(cluster: LocalCluster, *args: str, expect: int = 0) -> str:
    env = {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts, "NO_COLOR": "1"}
    result = subprocess.run([PVC, *args], env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == expect, output
    return output


def define(cluster: LocalCluster, name: str, *options: str) -> str:
    path = cluster.workdir / f"{name}.xml"
    path.write_text(cluster.vm_xml(name))
    pvc(cluster, "vm", "define", "--target", "hv1", *options, str(path))
    info: dict[str, str] = json.loads(pvc(cluster, "vm", "info", name, "-o", "json"))
    return info["uuid"]


def test_every_node_registers_with_figures_and_liveness(fast_cluster: LocalCluster) -> None:
    nodes = json.loads(pvc(fast_cluster, "node", "list", "-o", "json"))
    assert [(n["name"], n["daemonstate"]) for n in nodes] == [
        ("hv1", "run"),
        ("hv2", "run"),
        ("hv3", "run"),
    ]
    assert all(n["memtotal"] == 8192 and n["session_alive"] for n in nodes)
    assert re.search(r"Daemon session: +alive", pvc(fast_cluster, "node", "info", "hv1"))
    with fast_cluster.store() as store:
        assert store.children(schema.LIVENESS_PATH) == ["hv1", "hv2", "hv3"]


def test_start_migrate_by_fallback_and_stop(fast_cluster: LocalCluster) -> None:
    define(fast_cluster, "fast1")
    assert "running on hv1" in pvc(fast_cluster, "vm", "start", "fast1", "--wait")
    # The test driver cannot live-migrate: the daemons fall back to shutdown and start.
    output = pvc(fast_cluster, "vm", "migrate", "fast1", "--target", "hv2", "--wait")
    assert "running on hv2" in output and "moved by shutdown and start" in output
    assert "stopped" in pvc(fast_cluster, "vm", "stop", "fast1", "--yes", "--wait")
    pvc(fast_cluster, "vm", "undefine", "fast1", "--yes")


def test_live_only_vm_stays_put(fast_cluster: LocalCluster) -> None:
    define(fast_cluster, "fast2", "--method", "live")
    pvc(fast_cluster, "vm", "start", "fast2", "--wait")
    output = pvc(fast_cluster, "vm", "migrate", "fast2", "-t", "hv3", "--wait", expect=1)
    assert "still on hv1" in output and "migration_method is live" in output
    info = json.loads(pvc(fast_cluster, "vm", "info", "fast2", "-o", "json"))
    assert (info["node"], info["state"], info["lastnode"]) == ("hv1", "start", "")
    pvc(fast_cluster, "vm", "stop", "fast2", "--yes", "--wait")
    pvc(fast_cluster, "vm", "undefine", "fast2", "--yes")


def test_sigterm_stops_the_daemon_cleanly(fast_cluster: LocalCluster) -> None:
    daemon = fast_cluster.daemons["hv3"]
    daemon.stop()
    info = json.loads(pvc(fast_cluster, "node", "info", "hv3", "-o", "json"))
    assert info["daemonstate"] == "stop" and not info["session_alive"]
    with fast_cluster.store() as store:
        assert not store.exists(schema.liveness_path("hv3"))
    assert "daemon stopped" in daemon.log_path.read_text()
    daemon.start()
    fast_cluster.wait_nodes_running()


def test_make_cluster_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tests.harness.cluster"]
    workdir = ["--workdir", str(tmp_path / "c"), "--api-port", str(find_free_port())]
    first = subprocess.run(
        [*command, "up", "--mode", "test", *workdir], capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    *_, url_line, key_line, last_line = first.stdout.strip().splitlines()
    assert last_line.startswith("export PVC_ZOOKEEPER=127.0.0.1:")
    # The API daemon runs too, with a generated key, announced before the last line.
    assert url_line.startswith("export PVC_API_URL=http://127.0.0.1:")
    assert key_line.startswith("export PVC_API_KEY=") and len(key_line.split("=", 1)[1]) == 32
    request = urllib.request.Request(
        url_line.split("=", 1)[1] + "/node", headers={"X-Api-Key": key_line.split("=", 1)[1]}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert [node["name"] for node in json.loads(answer.read())] == ["hv1", "hv2", "hv3"]
    state = json.loads((tmp_path / "c" / "cluster.json").read_text())
    pids = [
        state["zookeeper"]["pid"],
        state["api"]["pid"],
        *(n["daemon_pid"] for n in state["nodes"].values()),
    ]
    second = subprocess.run(
        [*command, "up", "--mode", "test", *workdir], capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0 and "already running" in second.stderr
    assert second.stdout.strip().splitlines()[-1] == last_line
    env = {**os.environ, "PVC_ZOOKEEPER": last_line.split("=", 1)[1], "NO_COLOR": "1"}
    listing = subprocess.run([PVC, "vm", "list"], env=env, capture_output=True, text=True)
    assert "demo1" in listing.stdout and "start" in listing.stdout
    down = subprocess.run([*command, "down", *workdir], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0 and "stopped" in down.stdout
    wait_until(
        lambda: not any(pid_is_running(pid) for pid in pids),
        20,
        "a process of the cluster survived 'down'",
    )
    again = subprocess.run([*command, "down", *workdir], capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def test_a_vm_is_never_shut_down_for_a_target_that_cannot_take_it(
    fast_cluster: LocalCluster,
) -> None:
    define(fast_cluster, "fast3")
    pvc(fast_cluster, "vm", "start", "fast3", "--wait")
    fast_cluster.daemons["hv3"].stop()
    try:
        # As if hv3's daemon stopped just after `pvc vm migrate` checked it was ready.
        with fast_cluster.store() as store:
            vm = find_vm(store, "fast3")
            update_vm(store, vm, {"node": "hv3", "lastnode": "hv1", "state": "migrate"}, event="t")
        wait_until(
            lambda: (
                json.loads(pvc(fast_cluster, "vm", "info", "fast3", "-o", "json"))["state"]
                == "start"
            ),
            30,
            "the migration was not undone",
        )
        info = json.loads(pvc(fast_cluster, "vm", "info", "fast3", "-o", "json"))
        assert (info["node"], info["lastnode"]) == ("hv1", "")
        assert "hv3's daemon is stop, not run; it stays on hv1" in info["failed_reason"]
        nodes = {n["name"]: n for n in json.loads(pvc(fast_cluster, "node", "list", "-o", "json"))}
        assert info["uuid"] in nodes["hv1"]["runningdomains"]
    finally:
        fast_cluster.daemons["hv3"].start()
        fast_cluster.wait_nodes_running()
    pvc(fast_cluster, "vm", "stop", "fast3", "--yes", "--wait")
    pvc(fast_cluster, "vm", "undefine", "fast3", "--yes")
