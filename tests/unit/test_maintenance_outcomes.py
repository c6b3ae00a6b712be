"""The outcomes a flush, ready or fence recovery records, and which of them are final."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pvc_common.maintenance import FINAL_OUTCOMES, judge_maintenance, name_outcome
from pvc_common.models import NodeRecord, VmRecord

VM = VmRecord(uuid="u1", name="web1", state="start", node="hv2")

#: Every action a plan step can have (pvc_common.ha.PlanStep).
PLAN_ACTIONS = ("migrate", "stop-autostart", "start", "return", "stay")


@pytest.mark.parametrize("action", PLAN_ACTIONS)
def test_every_followed_step_ends_in_a_final_outcome(action: str) -> None:
    assert name_outcome(action, VM, True, "running on hv2")[0] in FINAL_OUTCOMES
    assert name_outcome(action, VM, False, "failed: boom") == ("failed", "failed: boom")


def test_a_migration_that_fell_back_is_named_so() -> None:
    reason = "live migration failed (x); moved by shutdown and start"
    fell_back = replace(VM, failedreason=reason)
    assert name_outcome("migrate", fell_back, True, "running on hv2") == (
        "shutdown-migrated",
        reason,
    )
    assert name_outcome("migrate", VM, True, "running on hv2") == (
        "live-migrated",
        "running on hv2",
    )
    assert name_outcome("return", VM, True, "running on hv1")[0] == "returned"


def test_a_vm_configured_for_shutdown_migration_is_never_called_live_migrated() -> None:
    configured = replace(VM, migration_method="shutdown")
    assert name_outcome("migrate", configured, True, "running on hv2")[0] == "shutdown-migrated"


@pytest.mark.parametrize(
    "outcome",
    [
        # what the fence monitor records for a fenced node's VMs (pvc_noded.fence_monitor)
        "started",
        "stopped-autostart",
        "stopped",  # it was shutting down: the power-off stopped it
        "stayed",
        "failed",
        # what the maintenance runner writes without following a move
        "returned",
    ],
)
def test_outcomes_written_directly_are_final(outcome: str) -> None:
    assert outcome in FINAL_OUTCOMES


def test_in_progress_is_not_final() -> None:
    assert "in-progress" not in FINAL_OUTCOMES


# ----------------------------------------------------------------- judge_maintenance


def _node(record: dict[str, Any], *, domainstate: str = "flush", daemon: str = "run") -> NodeRecord:
    return NodeRecord("hv1", daemonstate=daemon, domainstate=domainstate, maintenance=record)


def test_a_maintenance_wait_ends_with_its_own_record() -> None:
    running = _node({"kind": "flush", "started": 100, "status": "running", "vms": {}})
    assert judge_maintenance(running, "flush", started_after=100) is None
    done = _node(
        {"kind": "flush", "started": 100, "status": "done", "vms": {}}, domainstate="flushed"
    )
    outcome = judge_maintenance(done, "flush", started_after=100)
    assert outcome is not None and outcome.ok and outcome.message == "flush of hv1 done"


def test_a_previous_runs_record_does_not_end_the_wait() -> None:
    old = _node({"kind": "flush", "started": 50, "status": "done", "vms": {}})
    assert judge_maintenance(old, "flush", started_after=100) is None


def test_a_ready_replacing_the_flush_record_ends_the_flush_wait() -> None:
    """Regression (wait-superseded): the aborted flush record is replaced at once."""
    replaced = _node(
        {"kind": "ready", "started": 101, "status": "running", "vms": {}}, domainstate="unflush"
    )
    outcome = judge_maintenance(replaced, "flush", started_after=100)
    assert outcome is not None and not outcome.ok
    assert outcome.message == "flush of hv1 ended: superseded by a ready (domain state now unflush)"


def test_a_previous_flush_record_does_not_supersede_a_ready_just_asked_for() -> None:
    """The flush ended a moment before the ready was requested (within the clock-skew
    allowance): the ready's wait goes on until its own record appears."""
    previous = _node(
        {"kind": "flush", "started": 99.5, "status": "done", "vms": {}}, domainstate="unflush"
    )
    assert judge_maintenance(previous, "ready", started_after=100) is None


def test_a_fence_during_the_flush_ends_its_wait() -> None:
    """Regression (wait-fenced-maintenance)."""
    fenced = _node(
        {"kind": "recovery", "started": 105, "status": "done", "vms": {}},
        domainstate="flushed",
        daemon="fenced",
    )
    outcome = judge_maintenance(fenced, "flush", started_after=100)
    assert outcome is not None and not outcome.ok and "was fenced" in outcome.message


def test_a_request_to_a_node_without_its_daemon_is_not_waited_for() -> None:
    gone = _node(
        {"kind": "recovery", "started": 50, "status": "done", "vms": {}},
        domainstate="unflush",
        daemon="fenced",
    )
    outcome = judge_maintenance(gone, "ready", started_after=100)
    assert outcome is not None and not outcome.ok
    assert "not begun: its daemon is fenced" in outcome.message
