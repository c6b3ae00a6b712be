"""When a request carried out by the daemons has an outcome (``pvc vm ... --wait``)."""

from __future__ import annotations

import pytest

from pvc_common.models import NodeRecord, VmRecord
from pvc_common.vm_wait import judge, running_on


def vm(state: str, node: str = "hv2", failedreason: str = "") -> VmRecord:
    return VmRecord(
        uuid="u1", name="web1", state=state, node=node, failedreason=failedreason, version=0
    )


# action, record, nodes running it, target, expected (None = still going, else ok flag)
CASES = [
    ("start", vm("start"), (), "", None),
    ("start", vm("start"), ("hv2",), "", True),
    ("start", vm("fail", failedreason="no such file"), (), "", False),
    ("restart", vm("restart"), ("hv2",), "", None),
    ("restart", vm("start"), ("hv2",), "", True),
    ("shutdown", vm("shutdown"), (), "", None),
    ("shutdown", vm("stop"), ("hv2",), "", None),
    ("shutdown", vm("stop"), (), "", True),
    ("stop", vm("stop"), ("hv2",), "", None),
    ("stop", vm("stop"), (), "", True),
    ("disable", vm("disable"), (), "", True),
    ("migrate", vm("migrate"), ("hv1",), "hv2", None),
    ("migrate", vm("start"), ("hv1",), "hv2", None),
    ("migrate", vm("start"), ("hv1", "hv2"), "hv2", None),
    ("migrate", vm("start"), ("hv2",), "hv2", True),
    ("migrate", vm("start", node="hv1", failedreason="live-only"), ("hv1",), "hv2", False),
    ("migrate", vm("stop"), (), "hv2", True),
    ("move", vm("start"), ("hv2",), "hv2", True),
    ("unmigrate", vm("fail", failedreason="boom"), (), "hv2", False),
]


@pytest.mark.parametrize(("action", "record", "where", "target", "expected"), CASES)
def test_judge(
    action: str, record: VmRecord, where: tuple[str, ...], target: str, expected: bool | None
) -> None:
    outcome = judge(action, record, where, target)
    if expected is None:
        assert outcome is None
    else:
        assert outcome is not None and outcome.ok is expected
        assert outcome.message


def test_a_start_counts_only_once_the_daemon_confirmed_the_request() -> None:
    # Listed in runningdomains (just before the start), rewritten by someone (a 'vm meta'),
    # but the daemon has not confirmed request 4 yet.
    listed = VmRecord(
        uuid="u1", name="web1", state="start", node="hv2", request=4, confirmed=3, version=9
    )
    assert judge("start", listed, ("hv2",), request=4) is None
    confirmed = VmRecord(
        uuid="u1", name="web1", state="start", node="hv2", request=4, confirmed=4, version=10
    )
    outcome = judge("start", confirmed, ("hv2",), request=4)
    assert outcome is not None and outcome.ok


def test_a_later_request_supersedes_the_waited_one() -> None:
    # A stop (request 5) waited on; a start (request 6) was written before it stopped.
    restarted = VmRecord(uuid="u1", name="web1", state="start", node="hv2", request=6)
    outcome = judge("stop", restarted, ("hv2",), request=5)
    assert outcome is not None and not outcome.ok
    assert "superseded by a later request (now start on hv2)" in outcome.message
    # The same VM judged for its own latest request is simply still going.
    assert judge("start", restarted, (), request=6) is None


def test_a_start_whose_vm_stopped_is_not_ok() -> None:
    stopped = VmRecord(uuid="u1", name="web1", state="stop", node="hv2", request=3)
    outcome = judge("start", stopped, (), request=3)
    assert outcome is not None and not outcome.ok and "its state is stop" in outcome.message


def test_outcome_messages_carry_the_reason() -> None:
    failed = judge("start", vm("fail", failedreason="qemu: no kernel"), ())
    assert failed is not None and "qemu: no kernel" in failed.message
    fallback = judge("migrate", vm("start", failedreason="moved by shutdown"), ("hv2",), "hv2")
    assert fallback is not None and fallback.ok and "moved by shutdown" in fallback.message


def test_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        judge("teleport", vm("start"), ())


def test_running_on_reads_runningdomains() -> None:
    nodes = [
        NodeRecord(name="hv1", runningdomains=("u1", "u2")),
        NodeRecord(name="hv2", runningdomains=("u3",)),
        NodeRecord(name="hv3", runningdomains=("u1",)),
    ]
    assert running_on(nodes, "u1") == ("hv1", "hv3")
    assert running_on(nodes, "u9") == ()


def test_running_on_leaves_a_fenced_nodes_stale_list_out() -> None:
    # Regression (simulator): a fenced node's list stays as at the power loss; counting it
    # made every --wait on such a VM run into its timeout.
    nodes = [
        NodeRecord(name="hv1", runningdomains=("u1",), daemonstate="fenced"),
        NodeRecord(name="hv2", runningdomains=("u1",)),
    ]
    assert running_on(nodes, "u1") == ("hv2",)
