"""The pure lifecycle and migration rules, table-driven."""

from __future__ import annotations

import pytest

from pvc_common.errors import InvalidInput, PreconditionFailed
from pvc_common.models import VmRecord
from pvc_common.vm_rules import (
    migration_change,
    move_change,
    state_change,
    unmigrate_change,
)


def vm(state: str = "stop", node: str = "hv1", lastnode: str = "") -> VmRecord:
    return VmRecord(uuid="u", name="web1", state=state, node=node, lastnode=lastnode)


ALLOWED = {
    "start": {"stop", "shutdown", "disable", "fail"},
    "restart": {"start"},
    "shutdown": {"start", "restart"},
    "stop": {"start", "restart", "shutdown", "migrate", "fail"},
    "disable": {"start", "restart", "shutdown", "stop", "fail"},
}
STATES = ["start", "restart", "shutdown", "stop", "migrate", "disable", "fail", "delete"]


@pytest.mark.parametrize("action", sorted(ALLOWED))
@pytest.mark.parametrize("state", STATES)
def test_state_actions_follow_the_table(action: str, state: str) -> None:
    if state in ALLOWED[action]:
        change = state_change(vm(state), action)
        assert change.values["state"] == action
        assert change.event == f"{action} (was {state})"
    else:
        with pytest.raises(PreconditionFailed):
            state_change(vm(state), action)


def test_start_clears_the_previous_failure() -> None:
    assert state_change(vm("fail"), "start").values == {
        "state": "start",
        "failedreason": "",
        "request": 1,
    }
    assert "failedreason" not in state_change(vm("start"), "stop").values


def test_unknown_action_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown VM action 'pause'"):
        state_change(vm(), "pause")


#: A running VM's temporary migration from hv1 to hv2 (an old failure reason is cleared).
MIGRATING = {
    "node": "hv2",
    "lastnode": "hv1",
    "state": "migrate",
    "failedreason": "",
    "request": 1,
}


@pytest.mark.parametrize(
    ("record", "force", "expected"),
    [
        (vm("start"), False, MIGRATING),
        (vm("restart"), False, MIGRATING),
        (vm("stop"), False, {"node": "hv2", "lastnode": "hv1", "request": 1}),
        # --force on a migrated VM keeps the original previous node (its home)
        (vm("start", "hv3", "hv1"), True, MIGRATING),
    ],
)
def test_migration_bookkeeping(
    record: VmRecord, force: bool, expected: dict[str, str | int]
) -> None:
    assert migration_change(record, "hv2", force=force).values == expected


def test_migration_refusals() -> None:
    with pytest.raises(PreconditionFailed, match="already migrated from hv1"):
        migration_change(vm("start", "hv3", "hv1"), "hv2")
    with pytest.raises(PreconditionFailed, match="already migrating"):
        migration_change(vm("migrate", "hv2", "hv1"), "hv3", force=True)
    with pytest.raises(PreconditionFailed, match="being removed"):
        move_change(vm("delete"), "hv2")


def test_move_and_unmigrate_clear_the_previous_node() -> None:
    assert move_change(vm("start", "hv3", "hv1"), "hv2").values == {
        "node": "hv2",
        "lastnode": "",
        "state": "migrate",
        "failedreason": "",
        "request": 1,
    }
    assert unmigrate_change(vm("stop", "hv3", "hv1")).values == {
        "node": "hv1",
        "lastnode": "",
        "request": 1,
    }
    with pytest.raises(PreconditionFailed, match="not migrated"):
        unmigrate_change(vm("start"))


def test_forced_migration_home_clears_the_previous_node() -> None:
    # Regression (simulator): sent by force to its own home, the VM kept lastnode == node.
    change = migration_change(vm("start", "hv3", "hv1"), "hv1", force=True)
    assert change.values["lastnode"] == ""


def test_every_request_is_numbered_one_above_the_last() -> None:
    """A waiter tells a later request from any other write by this number."""
    numbered = VmRecord(uuid="u", name="web1", state="stop", node="hv1", request=41)
    assert state_change(numbered, "start").values["request"] == 42
    assert move_change(numbered, "hv2").values["request"] == 42


def test_a_live_migration_is_not_tried_again_toward_a_node_that_cannot_take_it() -> None:
    from pvc_common.models import NodeRecord
    from pvc_common.vm_rules import live_retry_refusal

    vm = VmRecord(uuid="u1", name="web1", node="hv2", state="start")
    ready = NodeRecord("hv2", daemonstate="run", domainstate="ready")
    assert live_retry_refusal(vm, ready) == ""
    assert live_retry_refusal(vm, NodeRecord("hv2", daemonstate="run", domainstate="unflush")) == ""
    for daemon, domain in (("run", "flush"), ("run", "flushed"), ("fenced", "fence-flush")):
        refusal = live_retry_refusal(vm, NodeRecord("hv2", daemonstate=daemon, domainstate=domain))
        assert refusal == f"hv2 cannot take it any more (daemon {daemon}, domain {domain})"
    assert "now meant for hv3" in live_retry_refusal(
        VmRecord(uuid="u1", name="web1", node="hv3"), ready
    )
    assert live_retry_refusal(None, ready) == "the VM was removed"
