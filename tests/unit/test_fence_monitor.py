"""The fence monitor's check: which nodes it fences again, and what it logs (no store)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pvc_common.ha import fence_retry_reason
from pvc_common.models import NodeRecord
from pvc_noded import fence_monitor
from pvc_noded.config import parse_config
from pvc_noded.fence_monitor import FenceMonitor

NOW = 1000.0


def row(name: str, daemonstate: str = "run", **kw: Any) -> NodeRecord:
    return NodeRecord(name=name, daemonstate=daemonstate, keepalive=NOW - 1, **kw)


FAILED = {"kind": "fence", "status": "failed", "fence": "FENCE FAILED, nothing recovered: x"}


def monitor(
    monkeypatch: pytest.MonkeyPatch, nodes: list[NodeRecord], live: set[str]
) -> tuple[FenceMonitor, list[str]]:
    """A monitor on hv1 over ``nodes``, whose fences are only recorded."""
    monkeypatch.setattr(fence_monitor, "load_nodes", lambda store: nodes)
    monkeypatch.setattr(fence_monitor, "live_nodes", lambda store: frozenset(live))
    config = parse_config(
        {"node": {"name": "hv1", "coordinator": True}, "zookeeper": {"hosts": "zk1:2181"}}
    )
    checker = FenceMonitor(
        None,  # type: ignore[arg-type]  # never reached: reads are patched, _fence is a spy
        config,
        fencer=None,  # type: ignore[arg-type]
        rbd=None,  # type: ignore[arg-type]
        clock=lambda: NOW,
    )
    fenced: list[str] = []
    monkeypatch.setattr(checker, "_fence", fenced.append)
    return checker, fenced


def test_the_observer_never_fences_its_own_node(monkeypatch: pytest.MonkeyPatch) -> None:
    # hv1's own session was lost and another coordinator marked it dead; its liveness is
    # not claimed again yet. hv3's fence failed: it is retried.
    nodes = [
        row("hv1", "dead", maintenance=FAILED),
        row("hv2"),
        row("hv3", "dead", maintenance=FAILED),
        row("hv4"),
        row("hv5"),
        row("hv6"),
    ]
    checker, fenced = monitor(monkeypatch, nodes, {"hv2", "hv4", "hv5", "hv6"})
    for _ in range(checker.config.fencing.rechecks):
        checker.check_once()
    assert fenced == ["hv3"]
    assert "hv1" not in checker._suspects


def test_a_retry_is_logged_with_why_it_is_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = [row("hv1"), row("hv2"), row("hv3", "dead", maintenance=FAILED), row("hv4")]
    checker, fenced = monitor(monkeypatch, nodes, {"hv1", "hv2", "hv4"})
    with caplog.at_level(logging.WARNING, logger=fence_monitor.__name__):
        checker.check_once()
    assert fenced == []  # check 1 of 2
    assert "node 'hv3' looks dead (its last fence failed): check 1 of 2" in caplog.text
    assert "not fenced" not in caplog.text


def test_fence_retry_reason() -> None:
    assert fence_retry_reason(row("hv3", "dead", maintenance=FAILED)) == "its last fence failed"
    running = {"kind": "fence", "status": "running"}
    assert "has not finished" in fence_retry_reason(row("hv3", "dead", maintenance=running))


def test_a_fence_without_a_usable_bmc_says_which_problem() -> None:
    from pvc_noded.fence_monitor import _bmc_of

    assert _bmc_of(row("hv2")) == (None, "no BMC address is configured for it")
    bmc, why_not = _bmc_of(row("hv2", ipmihostname="[zz]:623"))
    assert bmc is None and why_not.startswith("its BMC settings cannot be used: ")
    bmc, why_not = _bmc_of(row("hv2", ipmihostname="10.0.0.2", ipmiusername="admin"))
    assert bmc is not None and why_not == ""


def test_an_unfinished_recovery_is_resumed_never_fenced_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes = [
        row("hv1"),
        row("hv2", "fenced", domainstate="fence-flush"),  # its coordinator died recovering it
        row("hv3", "fenced", domainstate="flushed"),  # recovered: nothing to do
        row("hv4", "fenced", domainstate="fence-flush"),  # its daemon is back: not ours
        row("hv5"),
        row("hv6"),
    ]
    checker, fenced = monitor(monkeypatch, nodes, {"hv1", "hv4", "hv5", "hv6"})
    resumed: list[str] = []
    monkeypatch.setattr(checker, "_resume", resumed.append)
    for _ in range(3):
        checker.check_once()
    assert resumed == ["hv2"] * 3 and fenced == []
