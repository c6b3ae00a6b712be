"""This node's own row in ZooKeeper: figures, daemon state and ``runningdomains``.

Several threads of the daemon write the row (keepalive, VM workers claiming or handing
over a VM) and clients write it too (``pvc node flush``). Every write is version-checked,
so they are serialised here and a conflict is met by re-reading and writing again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pvc_common.errors import Conflict
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.mutations import update_node, update_vm_and_node
from pvc_common.snapshot import load_node
from pvc_common.store import ZkStore

from .hypervisor import DomainStatus, HostFigures

log = logging.getLogger(__name__)

#: Attempts of a write that keeps meeting concurrent writers of the row.
ATTEMPTS = 5


def node_figures(
    host: HostFigures,
    domains: Mapping[str, DomainStatus],
    provisioned: Iterable[int],
    *,
    listed: Iterable[str],
    now: float,
) -> dict[str, Any]:
    """The figures a keepalive writes, from what libvirt and ZooKeeper say right now.

    ``provisioned`` is the memory of every VM assigned to this node (running or not);
    ``listed`` is what ``runningdomains`` must list (what runs, plus VMs being started).
    """
    memalloc = sum(domain.memory_mib for domain in domains.values())
    return {
        "memtotal": host.memtotal,
        "memfree": host.memfree,
        "memused": max(0, host.memtotal - host.memfree),
        "memalloc": memalloc,
        "memprov": sum(provisioned),
        "vcpualloc": sum(domain.vcpus for domain in domains.values()),
        "cpuload": round(host.cpuload, 2),
        "domainscount": len(domains),
        "runningdomains": tuple(sorted(listed)),
        "keepalive": int(now),
        "staticdata": (str(host.cpus), host.kernel, host.os_name, host.arch),
    }


class NodeRow:
    """The latest known version of this node's row, and the only writer of it here."""

    def __init__(self, store: ZkStore, name: str) -> None:
        self._store = store
        self.name = name
        self._lock = threading.Lock()
        self._record: NodeRecord | None = None

    @property
    def record(self) -> NodeRecord:
        """The row as last read or written (read now if never read)."""
        with self._lock:
            if self._record is None:
                self._record = load_node(self._store, self.name)
            return self._record

    def update(
        self,
        changes: Mapping[str, Any] | Callable[[NodeRecord], Mapping[str, Any]],
        *,
        event: str = "",
        guard: VmRecord | None = None,
    ) -> NodeRecord:
        """Write ``changes`` (or what ``changes(row)`` returns), re-reading on a conflict.

        With ``guard`` a conflict on the VM is not retried: the caller decided on that
        VM's state, which changed, so it must decide again.
        """
        for attempt in range(ATTEMPTS):
            with self._lock:
                if self._record is None:
                    self._record = load_node(self._store, self.name)
                current = self._record
                values = changes(current) if callable(changes) else changes
                if not values:
                    return current  # nothing to change (decided on the fresh row)
                try:
                    self._record = update_node(
                        self._store, current, values, event=event, guard=guard
                    )
                    return self._record
                except Conflict:
                    self._record = None
                    if guard is not None and not self._row_changed(current):
                        raise
                    if attempt == ATTEMPTS - 1:
                        raise
            time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def hand_over(
        self,
        vm: VmRecord,
        vm_changes: Mapping[str, Any],
        node_changes: Callable[[NodeRecord], Mapping[str, Any]],
        *,
        event: str,
    ) -> VmRecord:
        """Change ``vm`` and this row in one transaction (see ``update_vm_and_node``).

        A conflict on the VM is raised (decide again); one on the row is retried.
        """
        for attempt in range(ATTEMPTS):
            with self._lock:
                if self._record is None:
                    self._record = load_node(self._store, self.name)
                current = self._record
                try:
                    written, self._record = update_vm_and_node(
                        self._store, vm, vm_changes, current, node_changes(current), event=event
                    )
                    return written
                except Conflict:
                    self._record = None
                    if not self._row_changed(current) or attempt == ATTEMPTS - 1:
                        raise
        raise AssertionError("unreachable")

    def forget(self) -> None:
        """Drop the cached row (after a lost session), so the next write reads it first."""
        with self._lock:
            self._record = None

    def _row_changed(self, seen: NodeRecord) -> bool:
        try:
            return bool(load_node(self._store, self.name).version != seen.version)
        except Exception:  # noqa: BLE001 - an unreadable row: let the caller retry
            return True
