"""Flush and ready as data: the node's ``maintenance`` record, and what plans read.

A node's daemon carries out a flush or a ready and keeps its progress in the node's
``maintenance`` key (JSON), one entry per VM: what the plan said and how it ended. The
CLI reads the same record for ``pvc node flush --wait`` and prints the plan for
``--dry-run``; nothing here acts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .domain_xml import parse_domain_xml
from .errors import InvalidInput
from .ha import Plan, VmSize, flush_plan, ready_plan
from .models import NodeRecord, VmRecord
from .snapshot import check_schema, load_default_selector, load_node, load_nodes, load_vms
from .store import ZkStore

#: The outcome of a VM whose plan step succeeded, by the step's action (a migration that
#: fell back to shutdown and start is ``shutdown-migrated`` instead).
SUCCESS_OUTCOMES = {
    "migrate": "live-migrated",
    "stop-autostart": "stopped-autostart",
    "start": "started",
    "return": "returned",
}

#: Outcomes that end a VM's part in a flush, a ready or a fence recovery: every one a
#: maintenance runner or the fence monitor writes, except ``in-progress``. ``stopped`` is
#: a fenced node's VM that was shutting down (the power-off stopped it); ``done`` is a
#: finished step of an action this version does not know (a record of another version).
FINAL_OUTCOMES = frozenset(
    {
        *SUCCESS_OUTCOMES.values(),
        "shutdown-migrated",
        "stayed",
        "stopped",
        "failed",
        "done",
    }
)


def name_outcome(action: str, vm: VmRecord, ok: bool, message: str) -> tuple[str, str]:
    """The recorded ``(outcome, reason)`` of a followed step, from ``vm_wait.judge``'s verdict.

    ``vm`` is the VM once the step ended: a migration that fell back to shutdown and
    start says so in its ``failedreason``; one configured for shutdown migration
    (``migration_method``) never went live.
    """
    if not ok:
        return "failed", message
    if action == "migrate" and "moved by shutdown and start" in vm.failedreason:
        return "shutdown-migrated", vm.failedreason
    if action == "migrate" and vm.migration_method == "shutdown":
        return "shutdown-migrated", message
    return SUCCESS_OUTCOMES.get(action, "done"), message


@dataclass(frozen=True)
class MaintenanceInputs:
    """What a flush or ready plan is computed from."""

    vms: list[VmRecord]
    nodes: list[NodeRecord]
    sizes: dict[str, VmSize]
    default_selector: str


def vm_sizes(vms: list[VmRecord]) -> dict[str, VmSize]:
    """Memory and vCPUs of each VM, from its XML (a VM whose XML is unreadable counts 0)."""
    sizes: dict[str, VmSize] = {}
    for vm in vms:
        try:
            domain = parse_domain_xml(vm.xml)
        except InvalidInput:
            sizes[vm.uuid] = VmSize(0, 0)
        else:
            sizes[vm.uuid] = VmSize(domain.memory_mib, domain.vcpus)
    return sizes


def load_inputs(store: ZkStore) -> MaintenanceInputs:
    """A fresh snapshot for planning."""
    check_schema(store)
    vms = load_vms(store)
    return MaintenanceInputs(vms, load_nodes(store), vm_sizes(vms), load_default_selector(store))


def plan_for(store: ZkStore, name: str, kind: str) -> Plan:
    """The plan a ``flush`` or ``ready`` of node ``name`` would carry out now."""
    load_node(store, name)  # NotFound for an unknown node
    inputs = load_inputs(store)
    if kind == "flush":
        return flush_plan(
            name, inputs.vms, inputs.nodes, inputs.sizes, default_selector=inputs.default_selector
        )
    if kind == "ready":
        return ready_plan(name, inputs.vms, inputs.nodes, inputs.sizes)
    raise InvalidInput(f"invalid maintenance kind {kind!r}: use flush or ready")


def new_record(kind: str, now: float) -> dict[str, Any]:
    """The record of a flush or ready that starts at ``now``."""
    return {"kind": kind, "status": "running", "started": round(now, 3), "vms": {}}


def record_vm(
    record: Mapping[str, Any],
    uuid: str,
    *,
    name: str,
    action: str,
    target: str,
    outcome: str,
    reason: str = "",
) -> dict[str, Any]:
    """A copy of ``record`` with one VM's entry set."""
    vms = dict(record.get("vms", {}))
    vms[uuid] = {
        "name": name,
        "action": action,
        "target": target,
        "outcome": outcome,
        "reason": reason,
    }
    return {**record, "vms": vms}


def outcome_rows(record: Mapping[str, Any]) -> list[list[str]]:
    """Table rows (VM, action, target, outcome, reason), by VM name."""
    entries = sorted(record.get("vms", {}).values(), key=lambda entry: entry.get("name", ""))
    return [
        [
            str(entry.get("name", "?")),
            str(entry.get("action", "")),
            str(entry.get("target", "")) or "-",
            str(entry.get("outcome", "")),
            str(entry.get("reason", "")) or "-",
        ]
        for entry in entries
    ]


def failed_vms(record: Mapping[str, Any]) -> list[str]:
    """Names of the VMs whose outcome is ``failed``."""
    return sorted(
        str(entry.get("name", "?"))
        for entry in record.get("vms", {}).values()
        if entry.get("outcome") == "failed"
    )


#: The domain state each kind ends in, and the ones that end it early.
_ENDS_IN = {"flush": "flushed", "ready": "ready"}
#: The domain states in which a node still asks for (or has finished) each kind.
_ASKS_FOR = {"flush": ("flush", "flushed"), "ready": ("unflush", "ready")}


@dataclass(frozen=True)
class MaintenanceOutcome:
    """How a waited-for flush or ready ended."""

    ok: bool
    message: str
    record: dict[str, Any]


def judge_maintenance(
    node: NodeRecord, kind: str, *, started_after: float
) -> MaintenanceOutcome | None:
    """How a flush or ready of ``node`` requested at ``started_after`` ended, or None.

    A record of the request's kind started after the request is its run, over when it
    says ``aborted`` or ``done`` (with the node's domain state final). The wait also ends
    when the node was fenced meanwhile (a fence or recovery record, or ``fence-flush``);
    when the node's domain state no longer asks for this kind (a ready during a flush
    aborts the flush, and its record replaces the flush's at once); and, before its run
    began, when the node's daemon is stopped, dead or fenced (the request stays, and runs
    when the daemon is back).
    """
    record = node.maintenance
    fresh = record.get("started", 0) >= started_after - 1
    ran = record.get("kind")
    if fresh and ran == kind:
        status = record.get("status")
        if status == "aborted":
            return MaintenanceOutcome(False, f"{kind} of {node.name} was aborted", record)
        if status == "done" and node.domainstate == _ENDS_IN[kind]:
            failed = failed_vms(record)
            if failed:
                return MaintenanceOutcome(
                    False, f"{kind} of {node.name} done; failed: {', '.join(failed)}", record
                )
            return MaintenanceOutcome(True, f"{kind} of {node.name} done", record)
        if status == "running":
            return None  # even if aborted meanwhile: the moves under way finish first
    if (fresh and ran in ("fence", "recovery")) or node.domainstate == "fence-flush":
        return MaintenanceOutcome(
            False, f"{kind} of {node.name} ended: the node was fenced meanwhile", {}
        )
    if node.domainstate not in _ASKS_FOR[kind]:
        return MaintenanceOutcome(
            False,
            f"{kind} of {node.name} ended: superseded by a "
            f"{'flush' if kind == 'ready' else 'ready'} (domain state now {node.domainstate})",
            {},
        )
    if not (fresh and ran == kind) and node.daemonstate in ("stop", "dead", "fenced"):
        return MaintenanceOutcome(
            False,
            f"{kind} of {node.name} not begun: its daemon is {node.daemonstate} "
            "(the request stays and runs when the daemon is back)",
            {},
        )
    return None


def wait_for_maintenance(
    store: ZkStore,
    name: str,
    kind: str,
    *,
    started_after: float,
    timeout: float = 1800.0,
    interval: float = 0.25,
    on_progress: Callable[[str], None] = lambda text: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MaintenanceOutcome:
    """Follow a flush or ready of node ``name`` until it ends (or ``timeout``).

    ``started_after`` is the wall-clock time of the request: an older record is a previous
    run's. ``on_progress`` gets one line per VM whose outcome changes.
    """
    deadline = clock() + timeout
    seen: dict[str, str] = {}
    while True:
        node = load_node(store, name)
        record = node.maintenance
        current = record.get("kind") == kind and record.get("started", 0) >= started_after - 1
        if current:
            for entry in record.get("vms", {}).values():
                key = f"{entry.get('name')}"
                text = f"{entry.get('outcome')}"
                if seen.get(key) != text:
                    seen[key] = text
                    target = f" -> {entry['target']}" if entry.get("target") else ""
                    on_progress(f"{key}: {entry.get('action')}{target}: {text}")
        outcome = judge_maintenance(node, kind, started_after=started_after)
        if outcome is not None:
            return outcome
        if clock() >= deadline:
            return MaintenanceOutcome(
                False,
                f"timed out after {timeout:g} s (domain state {node.domainstate})",
                record if current else {},
            )
        sleep(interval)
