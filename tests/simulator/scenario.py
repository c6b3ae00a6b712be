"""Scenarios as data: a directory with ``cluster.yaml``, ``steps.yaml`` and ``expected.log``.

``cluster.yaml`` describes the nodes and settings::

    seed: 1
    settings: {keepalive_interval: 2, fence_intervals: 3, concurrency: 2}
    nodes:
      hv1: {memory: 8192, coordinator: true}
      hv2: {memory: 8192, coordinator: true, bmc: fails}
    known_bug: one line naming a bug this scenario shows (the test is then an xfail)

``steps.yaml`` is a list of timed events, ``{at: SECONDS, do: KIND, ...}``, and one
``{run_until: SECONDS}``; :data:`STEP_KINDS` lists the kinds and their arguments. Steps at
the same time run in file order, before the daemons act in that tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from pvc_common.errors import PvcError

from .host import BMC_MODES, LiveFailure
from .operator import vm_uuid
from .simulation import ClusterSpec, NodeSpec, Settings, Simulation

#: The files of a scenario directory.
CLUSTER_FILE, STEPS_FILE, EXPECTED_FILE, README_FILE = (
    "cluster.yaml",
    "steps.yaml",
    "expected.log",
    "README.md",
)


class ScenarioError(ValueError):
    """A scenario file that cannot be understood."""


@dataclass(frozen=True)
class Step:
    """One timed event."""

    at: float
    do: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario directory."""

    name: str
    spec: ClusterSpec
    steps: tuple[Step, ...]
    run_until: float
    known_bug: str = ""


# ----------------------------------------------------------------------------- steps


def _running_host(sim: Simulation, name: str) -> str | None:
    return sim.host_of(vm_uuid(name))


def _define(sim: Simulation, a: Mapping[str, Any]) -> None:
    sim.operator.define(
        str(a["vm"]),
        node=a.get("node"),
        limit=tuple(a.get("limit", ())),
        selector=str(a.get("selector", "none")),
        autostart=bool(a.get("autostart", False)),
        memory=int(a.get("memory", 1024)),
        vcpus=int(a.get("vcpus", 1)),
        migration_method=str(a.get("migration_method", "none")),
    )


def _state(action: str) -> Callable[[Simulation, Mapping[str, Any]], None]:
    def apply(sim: Simulation, a: Mapping[str, Any]) -> None:
        sim.operator.set_state(str(a["vm"]), action)

    return apply


def _domain_state(action: str) -> Callable[[Simulation, Mapping[str, Any]], None]:
    def apply(sim: Simulation, a: Mapping[str, Any]) -> None:
        sim.operator.set_domain_state(str(a["node"]), action)

    return apply


def _kill_node(sim: Simulation, a: Mapping[str, Any]) -> None:
    sim.log.emit(f"fault: power loss of {a['node']}")
    sim.power_off(str(a["node"]), "power loss")


def _power_on(sim: Simulation, a: Mapping[str, Any]) -> None:
    sim.log.emit(f"operator: power on {a['node']}")
    sim.power_on(str(a["node"]))


def _daemon(kind: str) -> Callable[[Simulation, Mapping[str, Any]], None]:
    texts = {
        "stop": "operator: stop the daemon on {node}",
        "start": "operator: start the daemon on {node}",
        "restart": "operator: restart the daemon on {node}",
        "kill": "fault: daemon on {node} killed (SIGKILL)",
        "freeze": "fault: daemon on {node} frozen (SIGSTOP)",
        "thaw": "fault: daemon on {node} continued (SIGCONT)",
    }

    def apply(sim: Simulation, a: Mapping[str, Any]) -> None:
        node = str(a["node"])
        sim.log.emit(texts[kind].format(node=node))
        daemon = sim.daemons.get(node)
        if kind == "stop":
            sim.stop_daemon(node)
        elif kind == "restart":
            sim.stop_daemon(node, then_start=True)
        elif kind == "start":
            sim.start_daemon(node)
        elif kind == "kill":
            sim.kill_daemon(node)
        elif daemon is not None and kind == "freeze":
            daemon.freeze()
        elif daemon is not None:
            daemon.thaw()

    return apply


def _fail_next_start(sim: Simulation, a: Mapping[str, Any]) -> None:
    message = str(a.get("message", "internal error: process exited while connecting"))
    sim.log.emit(f"fault: the next start of {a['vm']} fails ({message})")
    sim.faults.failing_starts[str(a["vm"])] = message


def _fail_live(sim: Simulation, a: Mapping[str, Any]) -> None:
    message = str(a.get("message", "operation failed: migration job: unexpectedly failed"))
    times = a.get("times")
    count = "every attempt" if times is None else f"{times} attempt(s)"
    sim.log.emit(f"fault: live migration of {a['vm']} fails ({count}: {message})")
    limit = None if times is None else int(times)
    sim.faults.failing_live[str(a["vm"])] = LiveFailure(message, limit)


def _live_works(sim: Simulation, a: Mapping[str, Any]) -> None:
    sim.log.emit(f"operator: live migration of {a['vm']} works again")
    sim.faults.failing_live.pop(str(a["vm"]), None)


def _hang_shutdown(sim: Simulation, a: Mapping[str, Any]) -> None:
    sim.log.emit(f"fault: the guest of {a['vm']} ignores its power button")
    sim.faults.hanging_shutdowns.add(str(a["vm"]))


def _crash(sim: Simulation, a: Mapping[str, Any]) -> None:
    name = str(a["vm"])
    sim.log.emit(f"fault: {name} crashes")
    host = _running_host(sim, name)
    if host is not None:
        sim.crash(host, vm_uuid(name))


def _crash_loop(sim: Simulation, a: Mapping[str, Any]) -> None:
    name, after = str(a["vm"]), float(a.get("after", 2.0))
    sim.log.emit(f"fault: {name} crashes now and {after:g} s after every start")
    sim.faults.crash_loops[name] = after
    host = _running_host(sim, name)
    if host is not None:
        sim.crash(host, vm_uuid(name))


def _guest_shutdown(sim: Simulation, a: Mapping[str, Any]) -> None:
    name = str(a["vm"])
    sim.log.emit(f"fault: the guest of {name} powers itself off")
    host = _running_host(sim, name)
    if host is not None:
        sim.guest_shutdown(host, vm_uuid(name))


def _crash_after_fence(sim: Simulation, a: Mapping[str, Any]) -> None:
    node = str(a["node"])
    sim.log.emit(f"fault: the daemon on {node} dies right after it records its next fence")
    sim.faults.crash_after_fence.add(node)


def _bmc(sim: Simulation, a: Mapping[str, Any]) -> None:
    node, mode = str(a["node"]), str(a["mode"])
    if mode not in BMC_MODES:
        raise ScenarioError(f"bmc mode {mode!r}: use one of {', '.join(BMC_MODES)}")
    who = "operator" if mode == "works" else "fault"
    sim.log.emit(f"{who}: the BMC of {node} now {'works' if mode == 'works' else mode}")
    sim.bmcs[node].mode = mode


#: Step kind -> (apply, required arguments, optional arguments).
STEP_KINDS: dict[str, tuple[Callable[[Simulation, Mapping[str, Any]], None], set[str], set[str]]]
STEP_KINDS = {
    "define": (
        _define,
        {"vm"},
        {"node", "limit", "selector", "autostart", "memory", "vcpus", "migration_method"},
    ),
    "meta": (
        lambda sim, a: sim.operator.set_meta(
            str(a["vm"]),
            selector=a.get("selector"),
            autostart=a.get("autostart"),
            migration_method=a.get("migration_method"),
        ),
        {"vm"},
        {"selector", "autostart", "migration_method"},
    ),
    "start": (_state("start"), {"vm"}, set()),
    "restart": (_state("restart"), {"vm"}, set()),
    "shutdown": (_state("shutdown"), {"vm"}, set()),
    "stop": (_state("stop"), {"vm"}, set()),
    "disable": (_state("disable"), {"vm"}, set()),
    "migrate": (
        lambda sim, a: sim.operator.migrate(
            str(a["vm"]), a.get("node"), force=bool(a.get("force", False))
        ),
        {"vm"},
        {"node", "force"},
    ),
    "move": (lambda sim, a: sim.operator.move(str(a["vm"]), a.get("node")), {"vm"}, {"node"}),
    "unmigrate": (lambda sim, a: sim.operator.unmigrate(str(a["vm"])), {"vm"}, set()),
    "flush": (_domain_state("flush"), {"node"}, set()),
    "ready": (_domain_state("ready"), {"node"}, set()),
    "kill_node": (_kill_node, {"node"}, set()),
    "power_on": (_power_on, {"node"}, set()),
    "stop_daemon": (_daemon("stop"), {"node"}, set()),
    "start_daemon": (_daemon("start"), {"node"}, set()),
    "restart_daemon": (_daemon("restart"), {"node"}, set()),
    "kill_daemon": (_daemon("kill"), {"node"}, set()),
    "freeze_daemon": (_daemon("freeze"), {"node"}, set()),
    "thaw_daemon": (_daemon("thaw"), {"node"}, set()),
    "fail_next_start": (_fail_next_start, {"vm"}, {"message"}),
    "fail_live_migration": (_fail_live, {"vm"}, {"times", "message"}),
    "live_migration_works": (_live_works, {"vm"}, set()),
    "hang_shutdown": (_hang_shutdown, {"vm"}, set()),
    "crash": (_crash, {"vm"}, set()),
    "crash_loop": (_crash_loop, {"vm"}, {"after"}),
    "guest_shutdown": (_guest_shutdown, {"vm"}, set()),
    "bmc": (_bmc, {"node", "mode"}, set()),
    "crash_after_fence": (_crash_after_fence, {"node"}, set()),
}


def check_step(step: Step, nodes: Mapping[str, NodeSpec]) -> None:
    """Refuse an unknown kind, a missing or unknown argument, or an unknown node."""
    if step.do not in STEP_KINDS:
        raise ScenarioError(f"step at {step.at}: unknown kind {step.do!r}")
    _, required, optional = STEP_KINDS[step.do]
    missing = required - set(step.args)
    unknown = set(step.args) - required - optional
    if missing or unknown:
        raise ScenarioError(
            f"step {step.do} at {step.at}: missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    node = step.args.get("node")
    if node is not None and str(node) not in nodes and step.do != "define":
        raise ScenarioError(f"step {step.do} at {step.at}: unknown node {node!r}")


def apply_step(sim: Simulation, step: Step) -> None:
    """Carry out one step now (a refused operator command is logged, not raised)."""
    apply, _, _ = STEP_KINDS[step.do]
    try:
        apply(sim, step.args)
    except PvcError as error:  # e.g. an unknown VM: the CLI would print it and go on
        sim.log.emit(f"operator: {step.do}: refused: {error}")


# ----------------------------------------------------------------------------- files


def parse_cluster(data: Mapping[str, Any]) -> tuple[ClusterSpec, str]:
    """The cluster description and the ``known_bug`` line ('' when none)."""
    unknown = set(data) - {"seed", "settings", "nodes", "known_bug"}
    if unknown:
        raise ScenarioError(f"{CLUSTER_FILE}: unknown key(s) {sorted(unknown)}")
    settings_data = dict(data.get("settings") or {})
    bad = set(settings_data) - Settings.keys()
    if bad:
        raise ScenarioError(f"{CLUSTER_FILE}: unknown setting(s) {sorted(bad)}")
    nodes: dict[str, NodeSpec] = {}
    for name, props in (data.get("nodes") or {}).items():
        props = dict(props or {})
        bad = set(props) - {"memory", "coordinator", "load", "bmc", "power_on_after_fence"}
        if bad:
            raise ScenarioError(f"{CLUSTER_FILE}: node {name}: unknown key(s) {sorted(bad)}")
        nodes[str(name)] = NodeSpec(name=str(name), **props)
    if not nodes:
        raise ScenarioError(f"{CLUSTER_FILE}: no nodes")
    spec = ClusterSpec(nodes, Settings(**settings_data), int(data.get("seed", 1)))
    return spec, str(data.get("known_bug", "") or "")


def parse_steps(items: list[Any], nodes: Mapping[str, NodeSpec]) -> tuple[list[Step], float]:
    """The steps and the time to run until."""
    steps: list[Step] = []
    run_until: float | None = None
    for item in items:
        if not isinstance(item, dict):
            raise ScenarioError(f"{STEPS_FILE}: every item must be a mapping, not {item!r}")
        if "run_until" in item:
            run_until = float(item["run_until"])
            continue
        args = dict(item)
        try:
            step = Step(float(args.pop("at")), str(args.pop("do")), args)
        except KeyError as missing:
            raise ScenarioError(f"{STEPS_FILE}: {item!r} has no {missing}") from None
        check_step(step, nodes)
        steps.append(step)
    if run_until is None:
        raise ScenarioError(f"{STEPS_FILE}: no {{run_until: SECONDS}} item")
    late = [step for step in steps if step.at > run_until]
    if late:
        raise ScenarioError(f"{STEPS_FILE}: step(s) after run_until: {late}")
    return steps, run_until


def load_scenario(directory: Path) -> Scenario:
    """Read a scenario directory."""
    cluster = yaml.safe_load((directory / CLUSTER_FILE).read_text()) or {}
    spec, known_bug = parse_cluster(cluster)
    items = yaml.safe_load((directory / STEPS_FILE).read_text()) or []
    steps, run_until = parse_steps(items, spec.nodes)
    return Scenario(directory.name, spec, tuple(steps), run_until, known_bug)


def run(spec: ClusterSpec, steps: tuple[Step, ...] | list[Step], run_until: float) -> Simulation:
    """Run steps on a fresh cluster until ``run_until``; invariants raise on violation.

    At the end every request waited on must have settled.
    """
    sim = Simulation(spec)
    for step in steps:
        sim.schedule(step.at, step.do, partial(apply_step, sim, step))
    sim.run_until(run_until)
    sim.invariants.at_end()
    return sim


def run_scenario(scenario: Scenario) -> Simulation:
    """Run a loaded scenario."""
    return run(scenario.spec, scenario.steps, scenario.run_until)
