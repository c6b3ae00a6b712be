"""Choosing the node a VM goes to: pure functions over :class:`NodeRecord` snapshots.

Nothing here reads the store, the clock or the network, so the same inputs always give
the same node and the same explanation; callers take a snapshot of the nodes and act on
the answer under their own version checks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from .errors import InvalidInput
from .models import NodeRecord
from .schema import DEFAULT_SELECTORS, SELECTORS

# Each key sorts the best node first; the name is appended by the caller so that equal
# figures never fall back on the order the store happened to list the nodes in.
_RANK_KEYS: dict[str, Callable[[NodeRecord], float]] = {
    "mem": lambda node: -node.memfree,
    "memprov": lambda node: -(node.memtotal - node.memprov),
    "load": lambda node: node.cpuload,
    "vcpus": lambda node: node.vcpualloc,
    "vms": lambda node: node.domainscount,
}


@dataclass(frozen=True)
class Placement:
    """The outcome of an automatic choice: a node, or the reason there is none."""

    node: str | None  #: the chosen node, or None when no node qualifies
    reason: str  #: '' when a node was chosen, else a one-line explanation

    @property
    def found(self) -> bool:
        """Whether a node was chosen."""
        return self.node is not None


def resolve_selector(selector: str, default_selector: str) -> str:
    """Validate ``selector``; map ``none`` to ``default_selector``; return a real selector.

    The default is checked even when it is not used, so a bad cluster setting is reported
    the first time any placement runs rather than only when some VM defers to it.
    """
    if default_selector not in DEFAULT_SELECTORS:
        raise InvalidInput(
            f"invalid default selector {default_selector!r}: "
            f"use one of {', '.join(DEFAULT_SELECTORS)}"
        )
    if selector not in SELECTORS:
        raise InvalidInput(f"invalid selector {selector!r}: use one of {', '.join(SELECTORS)}")
    return default_selector if selector == "none" else selector


def rank_candidates(nodes: Iterable[NodeRecord], selector: str) -> tuple[str, ...]:
    """Names of ``nodes`` best first for a real (already resolved) ``selector``.

    No node is filtered out here; ties go to the alphabetically first name.
    """
    if selector not in _RANK_KEYS:
        raise InvalidInput(
            f"invalid selector {selector!r}: use one of {', '.join(DEFAULT_SELECTORS)}"
        )
    key = _RANK_KEYS[selector]
    return tuple(node.name for node in sorted(nodes, key=lambda node: (key(node), node.name)))


def _not_ready(node: NodeRecord) -> str:
    return f"{node.name} is not ready (daemon {node.daemonstate}, domain {node.domainstate})"


def _too_small(node: NodeRecord) -> str:
    return f"{node.name} has only {node.memfree} MiB free"


def _exclusion(node: NodeRecord, memory_mib: int, current_node: str | None) -> str | None:
    """Why an in-limit node cannot take the VM, or None when it can."""
    if node.name == current_node:
        return f"{node.name} is its current node"
    if not node.is_ready:
        return _not_ready(node)
    if node.memfree < memory_mib:
        return _too_small(node)
    return None


def _by_name(nodes: Iterable[NodeRecord]) -> dict[str, NodeRecord]:
    return {node.name: node for node in sorted(nodes, key=lambda node: node.name)}


def select_target_node(
    nodes: Iterable[NodeRecord],
    *,
    vm_name: str,
    memory_mib: int,
    node_limit: Collection[str] = (),
    selector: str = "none",
    default_selector: str = "mem",
    current_node: str | None = None,
) -> Placement:
    """Pick the best node for ``vm_name``, or explain in one line why none qualifies.

    Candidates are ready nodes inside ``node_limit`` (empty = all nodes), other than
    ``current_node``, with at least ``memory_mib`` MiB free; they are ranked by the
    resolved selector with ties broken by node name.
    """
    resolved = resolve_selector(selector, default_selector)
    by_name = _by_name(nodes)
    limit = set(node_limit)
    in_limit = [node for name, node in by_name.items() if not limit or name in limit]

    candidates = [node for node in in_limit if _exclusion(node, memory_mib, current_node) is None]
    if candidates:
        return Placement(rank_candidates(candidates, resolved)[0], "")

    header = f"no node can take {vm_name!r} ({memory_mib} MiB"
    header += f", limit {','.join(sorted(limit))}):" if limit else "):"
    if not by_name:
        return Placement(None, f"{header} no nodes in the cluster")

    parts = [reason for node in in_limit if (reason := _exclusion(node, memory_mib, current_node))]
    outside = [name for name in by_name if limit and name not in limit]
    if outside:
        parts.append(f"{', '.join(outside)} outside its limit")
    unknown = sorted(limit - by_name.keys())
    if unknown:
        noun = "node" if len(unknown) == 1 else "nodes"
        parts.append(f"limit names unknown {noun} {', '.join(unknown)}")
    return Placement(None, f"{header} {'; '.join(parts)}")


def check_explicit_target(
    nodes: Iterable[NodeRecord],
    target: str,
    *,
    vm_name: str,
    memory_mib: int,
    node_limit: Collection[str] = (),
    current_node: str | None = None,
) -> str | None:
    """Judge an operator-given ``target`` for ``vm_name``.

    Return None when the VM may go there, else a one-line reason: the node is unknown, it
    is the VM's current node, it is outside the VM's limit, it is not ready, or the VM's
    memory does not fit in its free memory.
    """
    node = _by_name(nodes).get(target)
    if node is None:
        return f"{target} is not a node of the cluster"
    if target == current_node:
        return f"{vm_name!r} is already on {target}"
    if node_limit and target not in node_limit:
        return f"{target} is outside the node limit of {vm_name!r} ({','.join(sorted(node_limit))})"
    if not node.is_ready:
        return _not_ready(node)
    if node.memfree < memory_mib:
        return f"{_too_small(node)}; {vm_name!r} needs {memory_mib} MiB"
    return None
