"""The reconcile decisions as a table: desired state x what libvirt has -> one action."""

from __future__ import annotations

import pytest

from pvc_common.models import NodeRecord, VmRecord
from pvc_common.reconcile import (
    Exit,
    Kind,
    Presence,
    crash_restarts_within,
    decide,
    migration_method_for,
    migration_revert,
)

HERE = "hv1"
R, INC, S = Presence.RUNNING, Presence.INCOMING, Presence.STOPPED


def vm(state: str, node: str = HERE, lastnode: str = "") -> VmRecord:
    return VmRecord(uuid="u1", name="web1", state=state, node=node, lastnode=lastnode)


# state, node, presence, expected kind, expected state written afterwards
OWNED_AND_FOREIGN = [
    # Assigned here, running here.
    ("start", HERE, R, Kind.NONE, None),
    ("restart", HERE, R, Kind.RESTART, "start"),
    ("shutdown", HERE, R, Kind.SHUTDOWN, "stop"),
    ("stop", HERE, R, Kind.DESTROY, None),
    ("disable", HERE, R, Kind.SHUTDOWN, None),
    ("fail", HERE, R, Kind.NONE, None),
    ("migrate", HERE, R, Kind.RECORD, "start"),
    ("delete", HERE, R, Kind.DESTROY, None),
    # Assigned here, live migration still arriving.
    ("migrate", HERE, INC, Kind.WAIT, None),
    ("start", HERE, INC, Kind.WAIT, None),
    # Assigned here, not running.
    ("start", HERE, S, Kind.START, None),
    ("restart", HERE, S, Kind.START, "start"),
    ("migrate", HERE, S, Kind.START, "start"),
    ("shutdown", HERE, S, Kind.RECORD, "stop"),
    ("stop", HERE, S, Kind.NONE, None),
    ("disable", HERE, S, Kind.NONE, None),
    ("fail", HERE, S, Kind.NONE, None),
    # Assigned elsewhere, running here: hand it over, or stop it.
    ("migrate", "hv2", R, Kind.MIGRATE_OUT, None),
    ("start", "hv2", R, Kind.MIGRATE_OUT, None),
    ("restart", "hv2", R, Kind.MIGRATE_OUT, None),
    ("shutdown", "hv2", R, Kind.SHUTDOWN, None),
    ("disable", "hv2", R, Kind.SHUTDOWN, None),
    ("stop", "hv2", R, Kind.DESTROY, None),
    ("delete", "hv2", R, Kind.DESTROY, None),
    ("fail", "hv2", R, Kind.NONE, None),
    ("start", "", R, Kind.NONE, None),
    ("migrate", "hv2", INC, Kind.WAIT, None),
    # Assigned elsewhere, not here: none of this node's business.
    ("start", "hv2", S, Kind.NONE, None),
    ("migrate", "hv2", S, Kind.NONE, None),
]


@pytest.mark.parametrize(("state", "node", "presence", "kind", "then_state"), OWNED_AND_FOREIGN)
def test_decision_table(
    state: str, node: str, presence: Presence, kind: Kind, then_state: str | None
) -> None:
    action = decide(vm(state, node), here=HERE, presence=presence)
    assert (action.kind, action.then_state) == (kind, then_state), action.reason
    assert action.reason


def test_migrate_out_targets_the_assigned_node() -> None:
    action = decide(vm("migrate", "hv3"), here=HERE, presence=R)
    assert action.target == "hv3"


@pytest.mark.parametrize("state", ["start", "restart", "migrate"])
def test_never_starts_while_another_node_reports_it_running(state: str) -> None:
    action = decide(vm(state), here=HERE, presence=S, running_elsewhere=("hv3", "hv2"))
    assert action.kind is Kind.WAIT
    assert "hv2, hv3" in action.reason


def test_unknown_domain_is_left_alone() -> None:
    assert decide(None, here=HERE, presence=R).kind is Kind.NONE


def test_guest_shutting_itself_down_is_recorded_as_stopped() -> None:
    action = decide(vm("start"), here=HERE, presence=S, last_exit=Exit.GUEST_SHUTDOWN)
    assert (action.kind, action.then_state) == (Kind.RECORD, "stop")


def test_crash_restarts_until_the_budget_is_spent() -> None:
    within = decide(
        vm("start"), here=HERE, presence=S, last_exit=Exit.CRASHED, recent_crash_restarts=2
    )
    assert (within.kind, within.crash_restart) == (Kind.START, True)
    spent = decide(
        vm("start"), here=HERE, presence=S, last_exit=Exit.CRASHED, recent_crash_restarts=3
    )
    assert (spent.kind, spent.then_state) == (Kind.RECORD, "fail")
    assert "3 restart(s)" in spent.failedreason


@pytest.mark.parametrize("last_exit", [Exit.UNKNOWN, Exit.DESTROYED, Exit.MIGRATED])
def test_other_exits_are_plain_starts(last_exit: Exit) -> None:
    action = decide(vm("start"), here=HERE, presence=S, last_exit=last_exit)
    assert (action.kind, action.crash_restart) == (Kind.START, False)


def test_crash_window_counts_only_recent_restarts() -> None:
    assert crash_restarts_within([10.0, 250.0, 290.0], now=300.0, window=60.0) == 2
    assert crash_restarts_within([], now=300.0, window=60.0) == 0


@pytest.mark.parametrize(
    ("lastnode", "restored"),
    [("hv1", ""), ("", ""), ("hv3", "hv3")],
    ids=["temporary-migration", "move", "forced-migration-keeps-home"],
)
def test_a_migration_undone_keeps_the_vm_home(lastnode: str, restored: str) -> None:
    record = vm("migrate", node="hv2", lastnode=lastnode)
    values = migration_revert(record, HERE, "live migration failed: port blocked")
    assert values["node"] == HERE and values["state"] == "start"
    assert values["lastnode"] == restored
    assert values["failedreason"] == "live migration failed: port blocked; it stays on hv1"


READY = NodeRecord(
    name="hv2", daemonstate="run", libvirturi="qemu+tcp://x/system", migrationuri="tcp://x"
)
STOPPED = NodeRecord(name="hv2", daemonstate="stop", libvirturi="u", migrationuri="m")


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("none", READY, "live"),
        ("live", READY, "live"),
        ("shutdown", READY, "shutdown"),
        ("none", None, "stay"),
        ("live", STOPPED, "stay"),
        ("shutdown", NodeRecord(name="hv2", daemonstate="dead"), "stay"),
        ("none", NodeRecord(name="hv2", daemonstate="run"), "stay"),
    ],
    ids=[
        "default",
        "live-only",
        "shutdown-only",
        "unknown-target",
        "daemon-stopped",
        "dead-even-for-shutdown",
        "no-uris",
    ],
)
def test_how_a_running_vm_is_sent(method: str, target: NodeRecord | None, expected: str) -> None:
    record = VmRecord(uuid="u1", name="web1", state="migrate", node="hv2", migration_method=method)
    chosen, reason = migration_method_for(record, target)
    assert chosen == expected
    assert bool(reason) == (expected == "stay")


@pytest.mark.parametrize("presence", [R, S])
def test_a_lock_flush_request_goes_to_the_vms_worker(presence: Presence) -> None:
    # The worker itself refuses (and records why) when the VM runs.
    record = VmRecord(uuid="u1", name="web1", state="stop", node=HERE, lockflush="requested")
    assert decide(record, here=HERE, presence=presence).kind is Kind.FLUSH_LOCKS
    elsewhere = VmRecord(uuid="u1", name="web1", state="stop", node="hv2", lockflush="requested")
    assert decide(elsewhere, here=HERE, presence=S).kind is Kind.NONE


def test_an_unconfirmed_request_of_a_running_vm_is_confirmed() -> None:
    """Regression (start-rewrite-lost): a stop then a start before the daemon acted left
    the VM running with nothing to do, and nothing told the start's waiter."""
    pending = VmRecord(uuid="u", name="web1", state="start", node=HERE, request=5, confirmed=3)
    action = decide(pending, here=HERE, presence=Presence.RUNNING)
    assert action.kind is Kind.RECORD and action.then_state == "start"
    confirmed = VmRecord(uuid="u", name="web1", state="start", node=HERE, request=5, confirmed=5)
    assert decide(confirmed, here=HERE, presence=Presence.RUNNING).kind is Kind.NONE
