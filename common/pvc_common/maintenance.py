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

#: Outcomes that end a VM's part in a flush or ready.
FINAL_OUTCOMES = frozenset(
    {
        "live-migrated",
        "shutdown-migrated",
        "stopped-autostart",
        "started",
        "returned",
        "stayed",
        "failed",
    }
)


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


@dataclass(frozen=True)
class MaintenanceOutcome:
    """How a waited-for flush or ready ended."""

    ok: bool
    message: str
    record: dict[str, Any]


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
            status = record.get("status")
            if status == "aborted":
                return MaintenanceOutcome(False, f"{kind} of {name} was aborted", record)
            if status == "done" and node.domainstate == _ENDS_IN[kind]:
                failed = failed_vms(record)
                if failed:
                    return MaintenanceOutcome(
                        False, f"{kind} of {name} done; failed: {', '.join(failed)}", record
                    )
                return MaintenanceOutcome(True, f"{kind} of {name} done", record)
        if clock() >= deadline:
            return MaintenanceOutcome(
                False,
                f"timed out after {timeout:g} s (domain state {node.domainstate})",
                record if current else {},
            )
        sleep(interval)
