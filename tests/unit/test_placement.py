"""Tests of the pure placement core: selectors, filters, tie-breaks and the reasons given."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pvc_common.errors import InvalidInput
from pvc_common.models import NodeRecord
from pvc_common.placement import (
    Placement,
    check_explicit_target,
    rank_candidates,
    resolve_selector,
    select_target_node,
)


def node(name: str, **overrides: Any) -> NodeRecord:
    """A ready node with plenty of memory, adjusted by ``overrides``."""
    values: dict[str, Any] = {
        "daemonstate": "run",
        "domainstate": "ready",
        "memtotal": 65536,
        "memfree": 32768,
        "memprov": 16384,
        "vcpualloc": 8,
        "cpuload": 1.0,
        "domainscount": 4,
    }
    values.update(overrides)
    return NodeRecord(name=name, **values)


# Each selector gets a cluster where it alone picks hv2 while every other figure points
# elsewhere, so a selector wired to the wrong metric picks the wrong node.
SELECTOR_CASES = [
    (
        "mem",
        [
            node("hv1", memfree=8000, memprov=0, cpuload=0.1, vcpualloc=1, domainscount=1),
            node("hv2", memfree=30000, memprov=60000),
            node("hv3", memfree=20000),
        ],
    ),
    (
        "memprov",
        [
            node("hv1", memtotal=65536, memprov=40000, memfree=60000, cpuload=0.1),
            node("hv2", memtotal=65536, memprov=1000, memfree=9000, vcpualloc=40),
            node("hv3", memtotal=32768, memprov=1000, domainscount=0),
        ],
    ),
    (
        "load",
        [
            node("hv1", cpuload=3.5, memfree=60000, vcpualloc=0),
            node("hv2", cpuload=0.25, memfree=9000, domainscount=30),
            node("hv3", cpuload=1.75, memprov=0),
        ],
    ),
    (
        "vcpus",
        [
            node("hv1", vcpualloc=12, cpuload=0.0, memfree=60000),
            node("hv2", vcpualloc=2, domainscount=30, cpuload=9.0),
            node("hv3", vcpualloc=6, domainscount=0),
        ],
    ),
    (
        "vms",
        [
            node("hv1", domainscount=9, vcpualloc=0, memfree=60000),
            node("hv2", domainscount=1, cpuload=9.0, vcpualloc=90),
            node("hv3", domainscount=5, cpuload=0.0),
        ],
    ),
]


@pytest.mark.parametrize(("selector", "nodes"), SELECTOR_CASES, ids=[c[0] for c in SELECTOR_CASES])
def test_each_selector_picks_its_best_node(selector: str, nodes: list[NodeRecord]) -> None:
    placement = select_target_node(nodes, vm_name="web1", memory_mib=1024, selector=selector)
    assert placement == Placement("hv2", "")
    assert placement.found


@pytest.mark.parametrize(("default", "nodes"), SELECTOR_CASES, ids=[c[0] for c in SELECTOR_CASES])
def test_none_uses_the_cluster_default(default: str, nodes: list[NodeRecord]) -> None:
    placement = select_target_node(
        nodes, vm_name="web1", memory_mib=1024, selector="none", default_selector=default
    )
    assert placement.node == "hv2"


@pytest.mark.parametrize(
    ("selector", "default", "expected"),
    [
        ("none", "mem", "mem"),
        ("none", "vms", "vms"),
        ("none", "load", "load"),
        ("load", "mem", "load"),
        ("memprov", "vcpus", "memprov"),
    ],
)
def test_resolve_selector(selector: str, default: str, expected: str) -> None:
    assert resolve_selector(selector, default) == expected


@pytest.mark.parametrize(
    ("selector", "default", "bad"),
    [
        ("fastest", "mem", "'fastest'"),
        ("", "mem", "''"),
        ("MEM", "mem", "'MEM'"),
        ("none", "none", "'none'"),
        ("none", "random", "'random'"),
        ("mem", "bogus", "'bogus'"),
    ],
)
def test_invalid_selectors_raise(selector: str, default: str, bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_selector(selector, default)
    message = str(info.value)
    assert bad in message
    assert "mem, memprov, load, vcpus, vms" in message
    assert "\n" not in message


def test_select_target_node_rejects_an_invalid_selector_even_on_an_empty_cluster() -> None:
    with pytest.raises(InvalidInput):
        select_target_node([], vm_name="web1", memory_mib=1, selector="nearest")


def test_rank_candidates_rejects_an_unresolved_selector() -> None:
    with pytest.raises(InvalidInput):
        rank_candidates([node("hv1")], "none")


@pytest.mark.parametrize("selector", ["mem", "memprov", "load", "vcpus", "vms"])
@pytest.mark.parametrize("seed", range(5))
def test_ties_go_to_the_first_name_whatever_the_input_order(selector: str, seed: int) -> None:
    nodes = [node(name) for name in ("hv3", "hv10", "hv1", "hv2", "hv20")]
    random.Random(seed).shuffle(nodes)
    placement = select_target_node(nodes, vm_name="web1", memory_mib=1024, selector=selector)
    assert placement.node == "hv1"
    assert rank_candidates(nodes, selector) == ("hv1", "hv10", "hv2", "hv20", "hv3")


def test_rank_candidates_orders_best_first() -> None:
    nodes = [node("hv1", memfree=100), node("hv2", memfree=300), node("hv3", memfree=200)]
    assert rank_candidates(nodes, "mem") == ("hv2", "hv3", "hv1")


@pytest.mark.parametrize(
    ("overrides", "kwargs", "expected"),
    [
        # hv1 is best by memfree in every case; each filter must push the choice elsewhere.
        ({}, {}, "hv1"),
        ({}, {"node_limit": ("hv2", "hv3")}, "hv3"),
        ({}, {"node_limit": ["hv2"]}, "hv2"),
        ({}, {"current_node": "hv1"}, "hv3"),
        ({"daemonstate": "stop"}, {}, "hv3"),
        ({"daemonstate": "init"}, {}, "hv3"),
        ({"daemonstate": "dead"}, {}, "hv3"),
        ({"domainstate": "flush"}, {}, "hv3"),
        ({"domainstate": "flushed"}, {}, "hv3"),
        ({"domainstate": "unflush"}, {}, "hv3"),
        ({"memfree": 4095}, {}, "hv3"),
        ({"memfree": 4095}, {"selector": "memprov"}, "hv3"),
    ],
)
def test_filters_exclude_the_best_ranked_node(
    overrides: dict[str, Any], kwargs: dict[str, Any], expected: str
) -> None:
    nodes = [
        node("hv1", **{"memfree": 60000, "memprov": 0, **overrides}),
        node("hv2", memfree=10000, memprov=50000),
        node("hv3", memfree=20000, memprov=30000),
    ]
    placement = select_target_node(nodes, vm_name="web1", memory_mib=4096, **kwargs)
    assert placement.node == expected
    assert placement.reason == ""


def test_memory_fit_is_inclusive() -> None:
    nodes = [node("hv1", memfree=4096), node("hv2", memfree=4095)]
    assert select_target_node(nodes, vm_name="web1", memory_mib=4096).node == "hv1"


@pytest.mark.parametrize(
    ("nodes", "kwargs", "expected"),
    [
        (
            [],
            {},
            "no node can take 'web1' (4096 MiB): no nodes in the cluster",
        ),
        (
            [node("hv2", daemonstate="stop", domainstate="flushed"), node("hv1")],
            {"node_limit": ("hv2", "hv1"), "current_node": "hv1"},
            "no node can take 'web1' (4096 MiB, limit hv1,hv2): hv1 is its current node; "
            "hv2 is not ready (daemon stop, domain flushed)",
        ),
        (
            [
                node("hv5"),
                node("hv3", memfree=2048),
                node("hv1"),
                node("hv2", domainstate="flush"),
                node("hv4"),
            ],
            {"node_limit": {"hv3", "hv2", "hv1"}, "current_node": "hv1"},
            "no node can take 'web1' (4096 MiB, limit hv1,hv2,hv3): hv1 is its current node; "
            "hv2 is not ready (daemon run, domain flush); hv3 has only 2048 MiB free; "
            "hv4, hv5 outside its limit",
        ),
        (
            [node("hv1"), node("hv2")],
            {"node_limit": ("hv9",)},
            "no node can take 'web1' (4096 MiB, limit hv9): hv1, hv2 outside its limit; "
            "limit names unknown node hv9",
        ),
        (
            [node("hv1", memfree=100), node("hv2")],
            {"node_limit": ("hv1", "hv8", "hv9")},
            "no node can take 'web1' (4096 MiB, limit hv1,hv8,hv9): hv1 has only 100 MiB free; "
            "hv2 outside its limit; limit names unknown nodes hv8, hv9",
        ),
        (
            [node("hv2", memfree=0), node("hv1", daemonstate="dead", domainstate="fence-flush")],
            {},
            "no node can take 'web1' (4096 MiB): hv1 is not ready (daemon dead, domain "
            "fence-flush); hv2 has only 0 MiB free",
        ),
    ],
    ids=[
        "empty",
        "current-and-not-ready",
        "mixed",
        "unknown-limit",
        "unknown-limit-plural",
        "no-limit",
    ],
)
def test_no_target_reason(nodes: list[NodeRecord], kwargs: dict[str, Any], expected: str) -> None:
    placement = select_target_node(nodes, vm_name="web1", memory_mib=4096, **kwargs)
    assert placement == Placement(None, expected)
    assert not placement.found
    assert "\n" not in placement.reason


def test_no_target_reason_does_not_depend_on_input_order() -> None:
    nodes = [
        node("hv1"),
        node("hv2", daemonstate="stop"),
        node("hv3", memfree=10),
        node("hv4", domainstate="flushed"),
    ]
    reasons = set()
    for seed in range(6):
        shuffled = list(nodes)
        random.Random(seed).shuffle(shuffled)
        placement = select_target_node(shuffled, vm_name="db", memory_mib=512, current_node="hv1")
        reasons.add(placement.reason)
    assert len(reasons) == 1
    reason = reasons.pop()
    assert reason.index("hv2 is not ready") < reason.index("hv3 has only 10 MiB free")
    assert reason.index("hv3") < reason.index("hv4 is not ready")


EXPLICIT_NODES = [
    node("hv1"),
    node("hv2", daemonstate="stop", domainstate="flushed"),
    node("hv3", memfree=2048),
    node("hv4"),
    node("hv5"),
]


@pytest.mark.parametrize(
    ("target", "kwargs", "expected"),
    [
        ("hv9", {}, "hv9 is not a node of the cluster"),
        ("hv1", {"current_node": "hv1"}, "'web1' is already on hv1"),
        (
            "hv5",
            {"node_limit": ("hv4", "hv1")},
            "hv5 is outside the node limit of 'web1' (hv1,hv4)",
        ),
        ("hv2", {}, "hv2 is not ready (daemon stop, domain flushed)"),
        ("hv3", {}, "hv3 has only 2048 MiB free; 'web1' needs 4096 MiB"),
        # The first refusal in order wins: unknown, current, limit, readiness, memory.
        ("hv2", {"node_limit": ("hv1",)}, "hv2 is outside the node limit of 'web1' (hv1)"),
        ("hv2", {"current_node": "hv2"}, "'web1' is already on hv2"),
    ],
)
def test_check_explicit_target_refuses(target: str, kwargs: dict[str, Any], expected: str) -> None:
    reason = check_explicit_target(
        EXPLICIT_NODES, target, vm_name="web1", memory_mib=4096, **kwargs
    )
    assert reason == expected


@pytest.mark.parametrize(
    ("target", "kwargs"),
    [
        ("hv4", {}),
        ("hv4", {"node_limit": ("hv4", "hv5"), "current_node": "hv1"}),
        ("hv3", {"memory_mib": 2048}),
    ],
)
def test_check_explicit_target_accepts(target: str, kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"memory_mib": 4096, **kwargs}
    assert check_explicit_target(EXPLICIT_NODES, target, vm_name="web1", **options) is None
