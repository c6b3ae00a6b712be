"""The pure HA core: flush, ready and recovery plans; dead-node judgement; storm guard."""

from __future__ import annotations

import pytest

from pvc_common.ha import VmSize, fencing_allowed, flush_plan, judge_node, ready_plan, recovery_plan
from pvc_common.models import NodeRecord, VmRecord


def node(name: str, free: int = 8192, vms: int = 0, **kw: object) -> NodeRecord:
    values: dict[str, object] = {
        "daemonstate": "run",
        "domainstate": "ready",
        "memtotal": 16384,
        "memfree": free,
        "domainscount": vms,
    }
    values.update(kw)
    return NodeRecord(name=name, **values)  # type: ignore[arg-type]


def vm(name: str, node_name: str = "hv1", state: str = "start", **kw: object) -> VmRecord:
    return VmRecord(uuid=f"u-{name}", name=name, state=state, node=node_name, **kw)  # type: ignore[arg-type]


NODES = [node("hv1"), node("hv2", free=4096), node("hv3", free=8192, vms=5)]
SIZES = {f"u-{n}": VmSize(1024, 1) for n in ("a", "b", "c", "d", "e", "big")}
SIZES["u-big"] = VmSize(6000, 4)


def steps(plan: object) -> list[tuple[str, str, str]]:
    return [(s.name, s.action, s.target) for s in plan.steps]  # type: ignore[attr-defined]


def test_flush_follows_limits_selectors_and_fit() -> None:
    vms = [
        vm("a", node_limit=("hv1", "hv2")),  # only hv2 possible
        vm("b", node_limit=("hv1",)),  # nowhere: stop with autostart
        vm("c", node_selector="vms"),  # fewest VMs: hv2 (0) over hv3 (5)
        vm("d", node_selector="mem"),  # most free memory: hv3 (8192)
        vm("big"),  # 6000 MiB: fits on hv3 only
        vm("e", state="stop"),  # not running: stays
        vm("other", node_name="hv2"),  # not on hv1: not in the plan
    ]
    plan = flush_plan("hv1", vms, NODES, SIZES, default_selector="mem")
    assert steps(plan) == [
        ("a", "migrate", "hv2"),
        ("b", "stop-autostart", ""),
        ("big", "migrate", "hv3"),
        ("c", "migrate", "hv2"),
        ("d", "migrate", "hv3"),
        ("e", "stay", ""),
    ]
    b = next(s for s in plan.steps if s.name == "b")
    assert "limit hv1" in b.reason and "current node" in b.reason
    assert plan.rows()[0] == ["a", "migrate", "hv2", "selector mem"]
    assert plan.count("migrate") == 4


def test_flush_projects_figures_so_a_target_is_not_overfilled() -> None:
    nodes = [node("hv1"), node("hv2", free=2500), node("hv3", free=1500)]
    vms = [vm(n) for n in ("a", "b", "c")]
    plan = flush_plan("hv1", vms, nodes, SIZES, default_selector="mem")
    # hv2 takes two (2500 -> 1476), then hv3 (1500) is the best; nothing overfills.
    assert steps(plan) == [
        ("a", "migrate", "hv2"),
        ("b", "migrate", "hv3"),
        ("c", "migrate", "hv2"),
    ]
    tight = [node("hv1"), node("hv2", free=1024)]
    assert [
        s.action for s in flush_plan("hv1", vms, tight, SIZES, default_selector="mem").steps
    ] == [
        "migrate",
        "stop-autostart",
        "stop-autostart",
    ]


def test_flush_never_targets_a_node_that_is_not_ready() -> None:
    nodes = [node("hv1"), node("hv2", domainstate="flushed"), node("hv3", daemonstate="dead")]
    plan = flush_plan("hv1", [vm("a")], nodes, SIZES, default_selector="mem")
    assert steps(plan) == [("a", "stop-autostart", "")]
    assert "hv2 is not ready" in plan.steps[0].reason and "hv3 is not ready" in plan.steps[0].reason


def test_ready_brings_vms_back_and_starts_autostart_ones() -> None:
    vms = [
        vm("a", node_name="hv2", lastnode="hv1"),  # running elsewhere: comes back
        vm("b", node_name="hv1", state="stop", node_autostart=True),  # starts
        vm("c", node_name="hv3", lastnode="hv1", state="stop"),  # reassigned, stays stopped
        vm("d", node_name="hv1", state="stop"),  # no autostart: stays stopped, not in plan
        vm("e", node_name="hv2", lastnode="hv3"),  # another node's VM: not in plan
        vm("big", node_name="hv3", lastnode="hv1"),
    ]
    nodes = [node("hv1", free=4000), node("hv2"), node("hv3")]
    plan = ready_plan("hv1", vms, nodes, SIZES)
    assert steps(plan) == [
        ("a", "return", "hv1"),
        ("b", "start", "hv1"),
        ("big", "stay", ""),  # 6000 MiB does not fit in what is left
        ("c", "return", "hv1"),
    ]
    assert "(stays stop)" in plan.steps[3].reason


def test_ready_starts_every_stopped_autostart_vm_including_returning_ones() -> None:
    """VMs on the readied node with autostart start; so does a stopped one coming back."""
    vms = [
        vm("a", node_name="hv2", lastnode="hv1", state="stop", node_autostart=True),
        vm("b", node_name="hv1", state="stop", node_autostart=True),
        vm("c", node_name="hv2", lastnode="hv1", state="stop"),  # no autostart: stays stopped
        vm("big", node_name="hv3", lastnode="hv1", state="stop", node_autostart=True),
        vm(
            "d",
            node_name="hv3",
            lastnode="hv1",
            state="stop",
            node_autostart=True,
            node_limit=("hv3",),
        ),
    ]
    nodes = [node("hv1", free=4000), node("hv2"), node("hv3")]
    plan = ready_plan("hv1", vms, nodes, SIZES)
    assert steps(plan) == [
        ("a", "start", "hv1"),
        ("b", "start", "hv1"),
        ("big", "stay", ""),  # it is to run: 6000 MiB does not fit in 4000 - 1024
        ("c", "return", "hv1"),
        ("d", "stay", ""),  # hv1 outside its limit
    ]
    assert plan.steps[0].reason == "autostart, back from hv2"
    assert "2976 MiB free" in plan.steps[2].reason


def test_recovery_starts_elsewhere_or_stops_with_autostart() -> None:
    nodes = [node("hv1", daemonstate="fenced"), node("hv2"), node("hv3")]
    vms = [vm("a"), vm("b", node_limit=("hv1",)), vm("c", state="stop")]
    plan = recovery_plan("hv1", vms, nodes, SIZES, default_selector="mem")
    assert steps(plan) == [("a", "start", "hv2"), ("b", "stop-autostart", ""), ("c", "stay", "")]


@pytest.mark.parametrize(
    ("daemonstate", "age", "session", "dead"),
    [
        ("run", 10, False, False),  # recent keepalive
        ("run", 31, True, False),  # late but its session is alive: slow, not dead
        ("run", 31, False, True),
        ("stop", 999, False, False),  # stopped cleanly: never fenced
        ("shutdown", 999, False, False),
        ("fenced", 999, False, False),
        ("dead", 999, False, False),  # already handled
    ],
)
def test_judge_node(daemonstate: str, age: int, session: bool, dead: bool) -> None:
    health = judge_node(
        node("hv1", daemonstate=daemonstate, keepalive=1000),
        session_alive=session,
        now=1000 + age,
        keepalive_interval=5,
        fence_intervals=6,
    )
    assert health.dead is dead and health.reason


def test_storm_guard() -> None:
    assert fencing_allowed(6, ["hv1", "hv2"], quorum=True) == (True, "")
    allowed, reason = fencing_allowed(6, ["hv1", "hv2", "hv3"], quorum=True)
    assert not allowed and "3 of 6" in reason
    allowed, reason = fencing_allowed(3, ["hv1"], quorum=False)
    assert not allowed and "quorum" in reason
    assert fencing_allowed(3, ["hv1"], quorum=True)[0]


def test_recovery_never_targets_a_node_whose_daemon_has_no_session() -> None:
    from pvc_common.ha import VmSize, recovery_plan, recovery_unfinished
    from pvc_common.models import NodeRecord, VmRecord

    nodes = [
        NodeRecord("hv1", daemonstate="run", memtotal=8192, memfree=8000),
        NodeRecord("hv2", daemonstate="run", memtotal=8192, memfree=4000),
        NodeRecord("hv3", daemonstate="fenced", domainstate="fence-flush"),
    ]
    vm = VmRecord(uuid="u1", name="web1", node="hv3", state="start", node_selector="mem")
    sizes = {"u1": VmSize(1024, 1)}
    # hv1 has the most free memory, but its daemon's session is gone: hv2 it is.
    (step,) = recovery_plan("hv3", [vm], nodes, sizes, default_selector="mem").steps
    assert step.target == "hv1"
    (step,) = recovery_plan("hv3", [vm], nodes, sizes, default_selector="mem", live={"hv2"}).steps
    assert (step.action, step.target) == ("start", "hv2")
    assert recovery_unfinished(nodes[2], "hv1", {"hv1", "hv2"})
    assert not recovery_unfinished(nodes[2], "hv3", set())  # never its own node
    assert not recovery_unfinished(nodes[2], "hv1", {"hv3"})  # its daemon is back


def test_recovery_leaves_alone_a_vm_another_running_node_lists() -> None:
    from pvc_common.ha import VmSize, recovery_plan
    from pvc_common.models import NodeRecord, VmRecord

    nodes = [
        NodeRecord("hv1", daemonstate="run", memtotal=8192, memfree=4000, runningdomains=("u1",)),
        NodeRecord("hv2", daemonstate="fenced", domainstate="fence-flush"),
        NodeRecord("hv3", daemonstate="run", memtotal=8192, memfree=8000),
    ]
    migrating = VmRecord(uuid="u1", name="web1", node="hv2", lastnode="hv1", state="start")
    died = VmRecord(uuid="u2", name="db1", node="hv2", state="start")
    sizes = {"u1": VmSize(1024, 1), "u2": VmSize(1024, 1)}
    plan = recovery_plan(
        "hv2", [migrating, died], nodes, sizes, default_selector="mem", live={"hv1", "hv3"}
    )
    assert [(s.name, s.action, s.target, s.reason) for s in plan.steps] == [
        ("db1", "start", "hv3", "selector mem"),
        ("web1", "stay", "", "runs on hv1: left to it"),
    ]
    # A lister without a ZooKeeper session proves nothing: the VM is recovered.
    plan = recovery_plan("hv2", [migrating], nodes, sizes, default_selector="mem", live={"hv3"})
    assert [(s.action, s.target) for s in plan.steps] == [("start", "hv3")]
