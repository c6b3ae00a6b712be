"""The source of a live migration keeps listing the VM until its target's list is trusted."""

from __future__ import annotations

from pvc_common.models import NodeRecord
from pvc_noded.departures import DepartureBook

VM = "00000000-0000-0000-0000-000000000001"


def node(name: str, keepalive: int, *listed: str, state: str = "run") -> NodeRecord:
    return NodeRecord(name, daemonstate=state, keepalive=keepalive, runningdomains=listed)


def book_with_departure() -> DepartureBook:
    book = DepartureBook()
    book.note(VM, "hv2")
    return book


def test_listed_and_counted_at_its_target_until_settled() -> None:
    book = book_with_departure()
    assert book.uuids() == {VM}
    assert book.target_of(VM) == "hv2"
    assert book.settle([node("hv1", 10, VM), node("hv2", 10)], "hv1") == {}
    assert book.uuids() == {VM}


def test_dropped_once_the_target_lists_it() -> None:
    book = book_with_departure()
    assert book.settle([node("hv1", 10, VM), node("hv2", 10, VM)], "hv1") == {VM: "listed by hv2"}
    assert not book and book.target_of(VM) is None


def test_dropped_once_a_third_node_lists_it_but_not_for_a_fenced_one() -> None:
    book = book_with_departure()
    nodes = [node("hv1", 10, VM), node("hv2", 10), node("hv3", 10, VM, state="fenced")]
    assert book.settle(nodes, "hv1") == {}
    nodes[2] = node("hv3", 11, VM)
    assert book.settle(nodes, "hv1") == {VM: "listed by hv3"}


def test_kept_while_the_operator_moves_it_on_from_a_paused_target() -> None:
    """The defect of dce53f6: a record naming another node is no reason to drop it."""
    book = book_with_departure()
    for _ in range(5):  # hv2's daemon is paused: its keepalive does not change
        assert book.settle([node("hv1", 10, VM), node("hv2", 10), node("hv3", 10)], "hv1") == {}
    assert book.target_of(VM) == "hv2"


def test_dropped_when_the_target_is_fenced_or_gone() -> None:
    book = book_with_departure()
    assert book.settle([node("hv2", 10, state="fenced")], "hv1") == {VM: "hv2 is fenced"}
    book = book_with_departure()
    assert book.settle([node("hv1", 10, VM)], "hv1") == {VM: "hv2 is no longer a node"}


def test_dropped_after_two_new_keepalives_of_the_target_without_it() -> None:
    book = book_with_departure()
    assert book.settle([node("hv2", 100)], "hv1") == {}  # first look
    assert book.settle([node("hv2", 100)], "hv1") == {}  # nothing new
    # The first new keepalive may have read libvirt before the departure: not enough.
    assert book.settle([node("hv2", 103)], "hv1") == {}
    assert book.settle([node("hv2", 105)], "hv1") == {VM: "hv2 no longer runs it"}


def test_keepalive_values_are_only_compared_with_the_targets_own() -> None:
    """A target whose clock is behind (smaller values) still counts as writing."""
    book = book_with_departure()
    book.settle([node("hv2", 5000)], "hv1")
    book.settle([node("hv2", 40)], "hv1")
    assert book.settle([node("hv2", 42)], "hv1") == {VM: "hv2 no longer runs it"}
