"""The maintenance runner's passes, on snapshots handed to it (no store)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pvc_common.ha import VmSize
from pvc_common.maintenance import MaintenanceInputs, new_record, record_vm
from pvc_common.models import NodeRecord, VmRecord
from pvc_noded import maintenance_runner
from pvc_noded.maintenance_runner import MaintenanceRunner


class Row:
    """Stands in for ``NodeRow``: keeps what the runner writes to hv1's row."""

    def __init__(self) -> None:
        self.writes: list[Mapping[str, Any]] = []

    def update(
        self,
        changes: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]],
        *,
        event: str = "",
        guard: VmRecord | None = None,
    ) -> None:
        self.writes.append(changes if isinstance(changes, Mapping) else {"event": event})


def inputs(maintenance: dict[str, Any] | None = None) -> MaintenanceInputs:
    nodes = [
        NodeRecord(name="hv1", domainstate="flush", maintenance=maintenance or {}),
        NodeRecord(name="hv2", memfree=8192),
    ]
    vms = [
        VmRecord(uuid="u-a", name="a", state="stop", node="hv1"),
        VmRecord(uuid="u-b", name="b", state="migrate", node="hv2", lastnode="hv1"),
    ]
    sizes = {"u-a": VmSize(1024, 1), "u-b": VmSize(3000, 2)}
    return MaintenanceInputs(vms, nodes, sizes, "mem")


def runner(row: Row) -> MaintenanceRunner:
    return MaintenanceRunner(
        None,  # type: ignore[arg-type]  # every read goes through the patched load_inputs
        row,  # type: ignore[arg-type]
        "hv1",
        concurrency=2,
        vm_timeout=60,
        stopping=threading.Event(),
        clock=lambda: 100.0,
    )


def test_a_pass_reads_the_cluster_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def load(store: object) -> MaintenanceInputs:
        reads.append(1)
        snapshot = inputs()
        # Nothing is moving any more: the flush ends in its first pass.
        snapshot.vms[1] = VmRecord(uuid="u-b", name="b", state="start", node="hv2")
        return snapshot

    monkeypatch.setattr(maintenance_runner, "load_inputs", load)
    row = Row()
    runner(row).run("flush")
    assert len(reads) == 2  # one before the run starts, one for its only pass
    final = [w for w in row.writes if "maintenance" in w][-1]["maintenance"]
    assert final["status"] == "done"
    assert final["vms"]["u-a"]["outcome"] == "stayed"


def test_a_resumed_move_counts_its_size_on_its_target() -> None:
    record = record_vm(
        new_record("flush", 50.0),
        "u-b",
        name="b",
        action="migrate",
        target="hv2",
        outcome="in-progress",
    )
    resumed = runner(Row())
    resumed._resume_or_start("flush", inputs(record))
    assert resumed.moves["u-b"].size == VmSize(3000, 2)
    assert resumed.handled == {"u-b"}
