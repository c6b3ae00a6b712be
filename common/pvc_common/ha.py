"""The pure HA core: flush, ready and recovery plans, and dead-node decisions.

Everything here takes plain snapshots (records, a clock value) and returns plans as data:
no store, no libvirt, no clock, no threads. The node daemons carry plans out; the CLI
prints them (``pvc node flush --dry-run``). Ties are broken by name, so the same cluster
always gives the same plan, and every "no" carries a reason a human can read.

Placement within a plan is done on *projected* figures: once a VM is planned onto a node,
that node's free memory, VM count, vCPUs and provisioned memory count it, so one plan
never overfills a target that looked empty at the start.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from .models import NodeRecord, VmRecord
from .placement import select_target_node

#: VM states in which a VM runs (or is about to) on its node.
RUNNING_STATES = frozenset({"start", "restart", "migrate"})


@dataclass(frozen=True)
class VmSize:
    """What a VM takes on a node (from its XML)."""

    memory_mib: int
    vcpus: int


@dataclass(frozen=True)
class PlanStep:
    """What a plan does with one VM.

    ``action`` is one of:

    * ``migrate``: send it (running) to ``target``;
    * ``stop-autostart``: no node can take it: shut it down, autostart it when its node
      is ready again;
    * ``start``: start it on ``target`` (recovery after a fence, or autostart on ready,
      also for a stopped VM coming back to ``target`` with autostart set);
    * ``return``: bring it back to ``target``, its previous node (ready);
    * ``stay``: leave it as it is (the reason says why).
    """

    uuid: str
    name: str
    action: str
    target: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps for one node, by VM name."""

    kind: str  #: flush, ready or recovery
    node: str
    steps: tuple[PlanStep, ...]

    def rows(self) -> list[list[str]]:
        """Table rows: VM, action, target, reason."""
        return [[s.name, s.action, s.target or "-", s.reason or "-"] for s in self.steps]

    def count(self, action: str) -> int:
        """How many steps have ``action``."""
        return sum(1 for step in self.steps if step.action == action)


def _project(node: NodeRecord, size: VmSize, sign: int = 1) -> NodeRecord:
    """``node`` as it will look once a VM of ``size`` runs on it (or left it, sign -1)."""
    return replace(
        node,
        memfree=node.memfree - sign * size.memory_mib,
        memalloc=node.memalloc + sign * size.memory_mib,
        memprov=node.memprov + sign * size.memory_mib,
        vcpualloc=node.vcpualloc + sign * size.vcpus,
        domainscount=node.domainscount + sign,
    )


def project_moves(
    nodes: Iterable[NodeRecord], moves: Iterable[tuple[str, VmSize]]
) -> list[NodeRecord]:
    """``nodes`` with each ``(target, size)`` counted on its target: moves under way that
    the targets' own figures do not show yet, so a new plan does not overfill them."""
    by_name = {node.name: node for node in nodes}
    for target, size in moves:
        if target in by_name:
            by_name[target] = _project(by_name[target], size)
    return list(by_name.values())


def _size(sizes: Mapping[str, VmSize], vm: VmRecord) -> VmSize:
    return sizes.get(vm.uuid, VmSize(0, 0))


def _place_all(
    kind: str,
    node: str,
    vms: Sequence[VmRecord],
    nodes: Iterable[NodeRecord],
    sizes: Mapping[str, VmSize],
    default_selector: str,
    moved_action: str,
    stuck_action: str,
) -> Plan:
    """Place each running VM of ``node`` elsewhere, projecting figures as it goes."""
    # The node itself stays among the candidates so reasons name it ("its current node").
    projected = {n.name: n for n in nodes}
    steps: list[PlanStep] = []
    for vm in sorted(vms, key=lambda v: (v.name, v.uuid)):
        if vm.node != node:
            continue
        if vm.state not in RUNNING_STATES:
            steps.append(PlanStep(vm.uuid, vm.name, "stay", "", f"not running ({vm.state})"))
            continue
        size = _size(sizes, vm)
        placement = select_target_node(
            projected.values(),
            vm_name=vm.name,
            memory_mib=size.memory_mib,
            node_limit=vm.node_limit,
            selector=vm.node_selector,
            default_selector=default_selector,
            current_node=node,
        )
        if placement.node is None:
            steps.append(PlanStep(vm.uuid, vm.name, stuck_action, "", placement.reason))
            continue
        projected[placement.node] = _project(projected[placement.node], size)
        selector = vm.node_selector if vm.node_selector != "none" else default_selector
        steps.append(
            PlanStep(vm.uuid, vm.name, moved_action, placement.node, f"selector {selector}")
        )
    return Plan(kind, node, tuple(steps))


def flush_plan(
    node: str,
    vms: Sequence[VmRecord],
    nodes: Iterable[NodeRecord],
    sizes: Mapping[str, VmSize],
    *,
    default_selector: str,
) -> Plan:
    """Where each running VM of ``node`` goes when the node is flushed.

    A running VM migrates to the node its selector picks within its limit among ready
    nodes where it fits; with no such node it is shut down and marked autostart, so it
    starts again when ``node`` is ready. VMs that are not running stay.
    """
    return _place_all(
        "flush", node, vms, nodes, sizes, default_selector, "migrate", "stop-autostart"
    )


def recovery_plan(
    node: str,
    vms: Sequence[VmRecord],
    nodes: Iterable[NodeRecord],
    sizes: Mapping[str, VmSize],
    *,
    default_selector: str,
    live: Collection[str] | None = None,
) -> Plan:
    """Where each VM that ran on a fenced ``node`` starts again.

    As a flush, but the VMs are started (they died with the node), and the fenced node's
    own stale figures are not a candidate: it is not ready. With ``live`` (the nodes whose
    daemon holds a ZooKeeper session), a node without one is no candidate either, even if
    it is not judged dead yet: its daemon could not start anything. A VM another running
    node lists as running there stays as it is.
    """
    nodes = list(nodes)
    if live is not None:
        nodes = [
            n if n.name in live or n.daemonstate != "run" else replace(n, daemonstate="dead")
            for n in nodes
        ]
    # A VM that another running node lists is alive there (the source of a live migration
    # to the fenced node keeps it until the target lists it): it is left alone. Starting
    # it would make a second copy, and clearing its RBD locks would blocklist the live one.
    elsewhere = {
        uuid: other.name
        for other in nodes
        # (after the filter above, 'run' means: with a session, when ``live`` is known)
        if other.name != node and other.daemonstate == "run"
        for uuid in other.runningdomains
    }
    left = [vm for vm in vms if vm.node == node and vm.uuid in elsewhere]
    plan = _place_all(
        "recovery",
        node,
        [vm for vm in vms if vm not in left],
        nodes,
        sizes,
        default_selector,
        "start",
        "stop-autostart",
    )
    if not left:
        return plan
    stays = [
        PlanStep(vm.uuid, vm.name, "stay", "", f"runs on {elsewhere[vm.uuid]}: left to it")
        for vm in left
    ]
    steps = sorted((*plan.steps, *stays), key=lambda step: (step.name, step.uuid))
    return Plan(plan.kind, plan.node, tuple(steps))


def ready_plan(
    node: str,
    vms: Sequence[VmRecord],
    nodes: Iterable[NodeRecord],
    sizes: Mapping[str, VmSize],
) -> Plan:
    """What happens when ``node`` becomes ready again.

    VMs whose previous node (``lastnode``) is ``node`` come back: running ones migrate
    back; stopped ones are reassigned and stay stopped, unless they are marked autostart:
    those are started here (``start`` with ``node`` as the target). VMs on ``node`` marked
    autostart start. A VM that would not fit (one that runs or is to start) stays where it
    is, with the reason.
    """
    by_name = {n.name: n for n in nodes}
    home = by_name.get(node)
    free = home.memfree if home else 0
    steps: list[PlanStep] = []
    for vm in sorted(vms, key=lambda v: (v.name, v.uuid)):
        size = _size(sizes, vm)
        if vm.lastnode == node and vm.node != node:
            running = vm.state in RUNNING_STATES
            # Once back, a stopped VM marked autostart is one of this node's autostart VMs:
            # it starts (and its flag clears) like them, in the same step.
            starts = not running and vm.node_autostart
            if vm.node_limit and node not in vm.node_limit:
                steps.append(PlanStep(vm.uuid, vm.name, "stay", "", f"{node} outside its limit"))
            elif (running or starts) and size.memory_mib > free:
                reason = f"{node} has {free} MiB free, it needs {size.memory_mib} MiB"
                steps.append(PlanStep(vm.uuid, vm.name, "stay", "", reason))
            elif starts:
                free -= size.memory_mib
                reason = f"autostart, back from {vm.node}"
                steps.append(PlanStep(vm.uuid, vm.name, "start", node, reason))
            else:
                if running:
                    free -= size.memory_mib
                reason = f"back from {vm.node}" + ("" if running else f" (stays {vm.state})")
                steps.append(PlanStep(vm.uuid, vm.name, "return", node, reason))
        elif vm.node == node and vm.node_autostart:
            if vm.state in RUNNING_STATES:
                steps.append(PlanStep(vm.uuid, vm.name, "stay", "", "already running"))
            else:
                steps.append(PlanStep(vm.uuid, vm.name, "start", node, "autostart"))
    return Plan("ready", node, tuple(steps))


# ----------------------------------------------------------------------------- dead nodes


@dataclass(frozen=True)
class NodeHealth:
    """Whether a node looks dead, and why."""

    name: str
    dead: bool
    reason: str


def judge_node(
    node: NodeRecord,
    *,
    session_alive: bool,
    now: float,
    keepalive_interval: float,
    fence_intervals: int,
) -> NodeHealth:
    """Whether ``node`` looks dead at ``now``.

    Only a node whose daemon is ``run`` can be dead: one that stopped cleanly (``stop``,
    ``shutdown``) or was already fenced is never fenced (again). It is dead when its last
    keepalive is older than ``keepalive_interval * fence_intervals`` *and* its daemon's
    ZooKeeper session is gone: a live session with a late keepalive is a slow node, not
    a dead one.
    """
    if node.daemonstate != "run":
        return NodeHealth(node.name, False, f"daemon {node.daemonstate}: not fenced")
    age = now - node.keepalive
    limit = keepalive_interval * fence_intervals
    if age <= limit:
        return NodeHealth(node.name, False, f"keepalive {age:.0f} s ago")
    if session_alive:
        return NodeHealth(node.name, False, f"keepalive {age:.0f} s ago but its session is alive")
    return NodeHealth(
        node.name, True, f"no keepalive for {age:.0f} s (limit {limit:.0f} s) and no session"
    )


def fence_retry_reason(node: NodeRecord) -> str:
    """Why a node left ``dead`` by an earlier fence is fenced again (for the log).

    :func:`judge_node` never finds such a node dead (its daemon state is no longer
    ``run``): the coordinators retry it on their own, and its record says why.
    """
    record = node.maintenance
    if record.get("kind") == "fence" and record.get("status") == "failed":
        return "its last fence failed"
    return "marked dead by a fence that has not finished"


def fencing_allowed(
    total_nodes: int, dead: Sequence[str], *, quorum: bool, max_dead_fraction: float = 1 / 3
) -> tuple[bool, str]:
    """The storm guard: may the observer fence ``dead`` nodes automatically?

    When more than ``max_dead_fraction`` of the nodes look dead at once, or ZooKeeper has
    no quorum, the observer is more likely the isolated one: fencing is refused.
    """
    if not quorum:
        return False, "ZooKeeper has no quorum: not fencing anything"
    if total_nodes and len(dead) > total_nodes * max_dead_fraction:
        return False, (
            f"{len(dead)} of {total_nodes} nodes look dead at once (more than "
            f"{max_dead_fraction:.0%}): refusing automatic fencing, this node may be the "
            "isolated one"
        )
    return True, ""


def recovery_unfinished(node: NodeRecord, observer: str, live: Collection[str]) -> bool:
    """Whether ``node`` was fenced and its recovery never finished (seen by ``observer``).

    A confirmed fence marks a node ``fenced`` and ``fence-flush``; its recovery ends in
    ``flushed``. A node still in between, whose daemon is not back, was left so by a
    coordinator that stopped during the recovery.
    """
    return (
        node.name != observer
        and node.daemonstate == "fenced"
        and node.domainstate == "fence-flush"
        and node.name not in live
    )
