"""Random histories on small clusters: the invariants hold after every tick of each one.

Hypothesis draws a cluster (3 or 4 nodes, BMC behaviours, timings), a few VMs with random
limits, selectors, autostart and migration methods, and a short random sequence of
operator requests and faults: starts and stops, metadata changes, migrations and moves,
flushes and readies, power losses, frozen, killed and restarted daemons, failing starts
and live migrations, hanging shutdowns, crashes, broken BMCs. Every history then *heals*
(faults cleared, nodes powered on, daemons started and continued, flushed nodes readied)
and runs on until every ``--wait`` has had time to end. The simulation checks the invariants
after every tick (``tests/simulator/invariants.py``); at the end every request must have
settled and the cluster must have converged: each VM that should run runs once, on its
node, and no other VM runs.

The run steps past the defects listed in ``tests/simulator/known_bugs.py`` (each one
has a scenario of its own that shows it). ``derandomize=True`` makes the examples a fixed
function of this file, so CI sees the same histories every run; ``PVC_PROPERTY_EXAMPLES``
changes their number and ``PVC_PROPERTY_EXPLORE=1`` draws new ones (for a long hunt). A
failure prints the history as scenario steps.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.simulator import ClusterSpec, NodeSpec, Settings, Simulation, Step, known_bugs
from tests.simulator.scenario import apply_step

VMS = ("vm1", "vm2", "vm3", "vm4")
SELECTORS = ("none", "mem", "memprov", "load", "vcpus", "vms")
#: The random part of a history ends by FAULTS_UNTIL; healing starts at HEAL_AT; flushed
#: nodes are readied at READY_AT; the run ends at END_AT.
FAULTS_UNTIL, HEAL_AT, READY_AT, END_AT = 24.0, 26.0, (40.0, 55.0), 80.0

#: Event kinds, repeated by how often they should come up.
VM_STATE_EVENTS = ("start", "stop", "shutdown", "restart")
NODE_EVENTS = (
    ("flush",) * 3
    + ("ready",) * 2
    + ("kill_node",) * 3
    + ("power_on", "freeze_daemon", "freeze_daemon", "thaw_daemon")
    + ("stop_daemon", "start_daemon", "kill_daemon", "restart_daemon")
)
VM_FAULT_EVENTS = ("fail_next_start", "hang_shutdown", "crash", "crash_loop", "guest_shutdown")

#: Log fragments counted by ``--hypothesis-show-statistics`` (how much each run covers).
COVERAGE = {
    "fenced": "': fenced (",
    "fence failed": "FENCE FAILED",
    "storm guard refused": "look dead at once",
    "recovered elsewhere": "(fenced)",
    "stopped with autostart after a fence": "fenced; ",
    "flush done": "flush done: flushed",
    "flush aborted": ": aborted",
    "ready done": "ready done: ready",
    "shutdown-migrated": "shutdown-migrated",
    "live migration failed": "live migration to",
    "migration undone": "migration undone",
    "crash restart": "crashed: restarting it",
    "crash loop ends in fail": "not restarting it",
    "start failed": "start failed",
    "session expired": "session of",
    "alive again": "alive again",
    "maintenance resumed": "resumed (",
    "wait never ends (known defect)": "never ends",
}


@st.composite
def clusters(draw: st.DrawFn) -> ClusterSpec:
    """A 3- or 4-node cluster (two coordinators) with random BMCs and timings."""
    count = draw(st.integers(3, 4))
    nodes = {}
    for index in range(1, count + 1):
        name = f"hv{index}"
        nodes[name] = NodeSpec(
            name,
            memory=draw(st.sampled_from((3072, 4096, 8192))),
            coordinator=index <= 2,
            load=draw(st.sampled_from((0.0, 0.5, 2.0))),
            bmc=draw(st.sampled_from(("works", "works", "works", "fails", "unreachable"))),
            power_on_after_fence=draw(st.booleans()),
        )
    timings = Settings(
        concurrency=draw(st.integers(1, 2)),
        rechecks=draw(st.integers(1, 2)),
        live_migration_time=draw(st.sampled_from((0.5, 1.5, 3.0))),
        shutdown_time=draw(st.sampled_from((1.0, 2.0))),
        shutdown_timeout=4.0,
        boot_time=draw(st.sampled_from((2.0, 5.0))),
        vm_timeout=30.0,
        restart_window=60.0,
        shuffle=True,
        workarounds=known_bugs.ALL,
    )
    return ClusterSpec(nodes, timings, seed=draw(st.integers(0, 2**16)))


def _event(draw: st.DrawFn, nodes: list[str], vms: list[str]) -> tuple[str, dict[str, Any]]:
    """One operator request or fault, with its arguments."""
    group = draw(st.sampled_from(("vm", "vm", "migration", "migration", "node", "node", "fault")))
    vm = draw(st.sampled_from(vms))
    if group == "vm":
        kind = draw(st.sampled_from(VM_STATE_EVENTS + ("meta",)))
        if kind == "meta":
            method = draw(st.sampled_from(("none", "live", "shutdown")))
            return kind, {"vm": vm, "autostart": draw(st.booleans()), "migration_method": method}
        return kind, {"vm": vm}
    if group == "migration":
        kind = draw(st.sampled_from(("migrate", "migrate", "move", "unmigrate")))
        args: dict[str, Any] = {"vm": vm}
        if kind != "unmigrate" and draw(st.booleans()):
            args["node"] = draw(st.sampled_from(nodes))
        if kind == "migrate" and draw(st.booleans()):
            args["force"] = True
        return kind, args
    if group == "node":
        return draw(st.sampled_from(NODE_EVENTS)), {"node": draw(st.sampled_from(nodes))}
    kind = draw(st.sampled_from(VM_FAULT_EVENTS + ("fail_live_migration", "bmc")))
    if kind == "fail_live_migration":
        return kind, {"vm": vm, "times": draw(st.sampled_from((1, 3)))}
    if kind == "bmc":
        mode = draw(st.sampled_from(("works", "fails", "unreachable")))
        return kind, {"node": draw(st.sampled_from(nodes)), "mode": mode}
    return kind, {"vm": vm}


@st.composite
def histories(draw: st.DrawFn) -> tuple[ClusterSpec, list[Step]]:
    """A cluster, its VMs (defined, most of them started), and random events."""
    spec = draw(clusters())
    nodes = sorted(spec.nodes)
    vms = list(VMS[: draw(st.integers(2, len(VMS)))])
    steps = []
    for name in vms:
        limit = draw(st.lists(st.sampled_from(nodes), max_size=3, unique=True))
        steps.append(
            Step(
                0.0,
                "define",
                {
                    "vm": name,
                    "limit": limit,
                    "selector": draw(st.sampled_from(SELECTORS)),
                    "autostart": draw(st.booleans()),
                    "memory": draw(st.sampled_from((512, 1024, 2048))),
                    "migration_method": draw(st.sampled_from(("none", "none", "live", "shutdown"))),
                },
            )
        )
        if draw(st.integers(0, 4)):
            steps.append(Step(0.5, "start", {"vm": name}))
    count = draw(st.integers(2, 8))
    moments = sorted(draw(st.integers(2, int(FAULTS_UNTIL * 2))) / 2 for _ in range(count))
    for moment in moments:
        kind, args = _event(draw, nodes, vms)
        steps.append(Step(moment, kind, args))
    return spec, steps


def heal(sim: Simulation) -> None:
    """Clear every fault; power on, continue and start whatever is down."""
    sim.log.emit("heal: clearing faults")
    sim.faults.failing_starts.clear()
    sim.faults.failing_live.clear()
    sim.faults.hanging_shutdowns.clear()
    sim.faults.crash_loops.clear()
    for name in sorted(sim.hosts):
        if name in sim.bmcs:
            sim.bmcs[name].mode = "works"
        daemon = sim.daemons.get(name)
        if not sim.hosts[name].powered:
            sim.power_on(name)  # its daemon starts once it has booted
        elif daemon is not None:
            daemon.thaw()
        else:
            sim.start_daemon(name)


def ready_all(sim: Simulation) -> None:
    """Ready every node left flushed, as an operator would once the cluster is whole."""
    for name in sorted(sim.hosts):
        if name not in sim.daemons and sim.hosts[name].up:
            sim.start_daemon(name)
        node = sim.store.nodes.get(name)
        if node is not None and node.domainstate in ("flushed", "flush"):
            sim.operator.set_domain_state(name, "ready")


def converged(sim: Simulation) -> None:
    """After healing, each VM's record and the hosts agree."""
    for vm in sim.store.load_vms():
        hosts = sorted(h.name for h in sim.hosts.values() if vm.uuid in h.running())
        if vm.state == "start" and hosts != [vm.node]:
            sim.invariants.fail(f"not converged: {vm.name} is to run on {vm.node}, runs on {hosts}")
        elif vm.state in ("stop", "fail", "disable") and hosts:
            sim.invariants.fail(f"not converged: {vm.name} is {vm.state} but runs on {hosts}")
        elif vm.state not in ("start", "stop", "fail", "disable"):
            sim.invariants.fail(f"not converged: {vm.name} is still {vm.state} after healing")


def run_history(spec: ClusterSpec, steps: list[Step]) -> Simulation:
    """Run a history, heal, ready, and check the end state."""
    sim = Simulation(spec)
    for step in steps:
        sim.schedule(step.at, step.do, partial(apply_step, sim, step))
    sim.schedule(HEAL_AT, "heal", lambda: heal(sim))
    for moment in READY_AT:
        sim.schedule(moment, "ready all", lambda: ready_all(sim))
    sim.run_until(END_AT)
    sim.invariants.at_end()
    converged(sim)
    return sim


def as_steps(spec: ClusterSpec, steps: list[Step]) -> str:
    """A history written as a scenario's files would say it."""
    lines = [f"seed: {spec.seed}", f"settings: {spec.settings}", "nodes:"]
    lines += [f"  {node}" for node in spec.nodes.values()]
    lines.append("steps:")
    for step in steps:
        args = "".join(f", {key}: {value}" for key, value in step.args.items())
        lines.append(f"- {{at: {step.at}, do: {step.do}{args}}}")
    return "\n".join(lines)


def _note_coverage(sim: Simulation) -> None:
    text = sim.log.text()
    for label, fragment in COVERAGE.items():
        if fragment in text:
            event(label)


@settings(
    max_examples=int(os.environ.get("PVC_PROPERTY_EXAMPLES", "1000")),
    deadline=None,
    derandomize=not os.environ.get("PVC_PROPERTY_EXPLORE"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(histories())
def test_random_histories_keep_the_invariants(history: tuple[ClusterSpec, list[Step]]) -> None:
    spec, steps = history
    try:
        sim = run_history(spec, steps)
    except AssertionError as error:
        raise AssertionError(f"{error}\n\nhistory:\n{as_steps(spec, steps)}") from None
    _note_coverage(sim)
