"""Flush and ready carried out by real daemons (fast mode: libvirt's test driver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.zookeeper import wait_until

PVC = str(Path(sys.executable).with_name("pvc"))


@pytest.fixture(scope="module")
def fast_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # A periodic pass only every 60 s: everything here must be driven by watches (a flush
    # once waited for that pass), and the --wait timeouts below are far shorter.
    cluster = LocalCluster(
        tmp_path_factory.mktemp("fm"),
        mode="test",
        daemon_settings={"daemon": {"reconcile_interval": 60}},
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def pvc(cluster: LocalCluster, *args: str, expect: int = 0) -> str:
    env = {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts, "NO_COLOR": "1"}
    result = subprocess.run([PVC, *args], env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == expect, output
    return output


def define_running(cluster: LocalCluster, name: str, *options: str, node: str = "hv1") -> None:
    path = cluster.workdir / f"{name}.xml"
    path.write_text(cluster.vm_xml(name, str(uuid.uuid4()), memory_mib=512))
    pvc(cluster, "vm", "define", "--target", node, *options, str(path))
    pvc(cluster, "vm", "start", name, "--wait")


def row(table: str, name: str) -> list[str]:
    """The cells of the table line of VM ``name`` (split on whitespace)."""
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [name])


def info(cluster: LocalCluster, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pvc(cluster, "vm", "info", name, "-o", "json"))
    return data


def node_info(cluster: LocalCluster, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pvc(cluster, "node", "info", name, "-o", "json"))
    return data


def test_flush_and_ready_follow_limits_selectors_and_autostart(fast_cluster: LocalCluster) -> None:
    define_running(fast_cluster, "fa", "--limit", "hv1,hv2")
    define_running(fast_cluster, "fb", "--limit", "hv1")
    define_running(fast_cluster, "fc", "--selector", "vms")
    define_running(fast_cluster, "fd", node="hv2")  # not on hv1: not involved

    # Plans read the nodes' published figures: wait until hv2's shows fd running there.
    wait_until(lambda: node_info(fast_cluster, "hv2")["domainscount"] == 1, 30, "hv2 figures stale")
    dry = pvc(fast_cluster, "node", "flush", "hv1", "--dry-run")
    assert row(dry, "fa") == ["fa", "migrate", "hv2", "selector", "mem"]
    assert row(dry, "fb")[:3] == ["fb", "stop-autostart", "-"]
    assert row(dry, "fc")[:3] == ["fc", "migrate", "hv3"]  # fewer VMs than hv2 (fd is there)
    assert node_info(fast_cluster, "hv1")["domainstate"] == "ready"  # nothing written

    output = pvc(fast_cluster, "node", "flush", "hv1", "--wait", "--wait-timeout", "20")
    assert "flush of hv1 done" in output
    assert row(output, "fb")[:4] == ["fb", "stop-autostart", "-", "stopped-autostart"]
    assert row(output, "fa")[3] == "shutdown-migrated"  # the test driver cannot go live
    placed = {name: info(fast_cluster, name) for name in ("fa", "fb", "fc")}
    assert (placed["fa"]["node"], placed["fa"]["lastnode"], placed["fa"]["state"]) == (
        "hv2",
        "hv1",
        "start",
    )
    assert (placed["fc"]["node"], placed["fc"]["state"]) == ("hv3", "start")
    assert (placed["fb"]["node"], placed["fb"]["state"], placed["fb"]["node_autostart"]) == (
        "hv1",
        "stop",
        True,
    )
    hv1 = node_info(fast_cluster, "hv1")
    assert hv1["domainstate"] == "flushed" and hv1["runningdomains"] == []
    assert hv1["maintenance"]["status"] == "done"
    # hv1's daemon counted the two VMs it sent away, with their durations (for /metrics).
    sent = hv1["stats"]["migration_shutdown"]
    assert sent["count"] == 2 and sent["seconds"] > 0, hv1["stats"]
    # A flushed node takes nothing new.
    assert "hv1 is not ready" in pvc(
        fast_cluster, "vm", "migrate", "fd", "--target", "hv1", expect=5
    )

    output = pvc(fast_cluster, "node", "ready", "hv1", "--wait", "--wait-timeout", "20")
    assert "ready of hv1 done" in output
    back = {name: info(fast_cluster, name) for name in ("fa", "fb", "fc", "fd")}
    for name in ("fa", "fb", "fc"):
        assert (back[name]["node"], back[name]["state"], back[name]["lastnode"]) == (
            "hv1",
            "start",
            "",
        ), name
    assert back["fb"]["node_autostart"] is False  # the flag is spent
    assert back["fd"]["node"] == "hv2"  # not hv1's VM
    # fb's history tells the story: who stopped it for the flush and why, who started it.
    history = json.loads(pvc(fast_cluster, "vm", "history", "fb", "-o", "json"))["entries"]
    by_daemon = [(entry["by"], entry["what"], entry["why"]) for entry in history]
    stopped = next(item for item in by_daemon if item[1].startswith("stop-autostart"))
    assert stopped[0] == "pvcnoded hv1" and stopped[2], stopped
    assert any(
        item[0] == "pvcnoded hv1" and item[1].startswith("started on hv1") for item in by_daemon
    )
    assert node_info(fast_cluster, "hv1")["domainstate"] == "ready"
    for name in ("fa", "fb", "fc", "fd"):
        pvc(fast_cluster, "vm", "stop", name, "--yes", "--wait")


def test_a_vm_that_cannot_move_is_reported_failed_not_skipped(fast_cluster: LocalCluster) -> None:
    # The test driver cannot live-migrate, so a live-only VM cannot leave.
    define_running(fast_cluster, "fl", "--method", "live")
    output = pvc(fast_cluster, "node", "flush", "hv1", "--wait", expect=1)
    assert "failed: fl" in output
    assert row(output, "fl")[3] == "failed" and "migration_method is live" in output
    assert info(fast_cluster, "fl")["node"] == "hv1"  # still running where it was
    pvc(fast_cluster, "node", "ready", "hv1", "--wait")
    pvc(fast_cluster, "vm", "stop", "fl", "--yes", "--wait")
