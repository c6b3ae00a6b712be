"""VMs that left this node by live migration, and how long this node keeps listing them.

When a live migration ends, the VM runs on its target, but the target's daemon lists it
in its ``runningdomains`` only a moment later (or, if that daemon is paused or stopped,
much later). If the source stopped listing it at once, the VM would for that moment be
listed nowhere while it runs, and a node told to start it (a move, a start on another
node) would start a second copy. So the source keeps listing it, and counts it as running
at the target when it decides, until the target's own list can be trusted about it:

- another node that is not fenced lists it (normally the target, on arrival);
- the target is fenced (its power-off was confirmed: the VM no longer runs anywhere), or
  its row is gone;
- the target has written two keepalives since this node first looked after the
  departure. Keepalives are written one after the other, so the second one's list was
  read from libvirt after the departure: if the VM is not on it, it no longer runs there
  (it was stopped on the target before the target listed it).

Keepalive *values* are compared only with earlier values of the same node, never with
this node's clock, so clock skew between nodes does not matter.

The book is plain data without locking or I/O; the daemon guards it with its own lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pvc_common.models import NodeRecord

#: Keepalives the target must write after the first look before its list is trusted.
KEEPALIVES_TO_TRUST = 2


@dataclass
class Departure:
    """One VM that left by live migration for ``target``."""

    target: str
    #: The target's keepalive value at the last look (None before the first one).
    keepalive: int | None = None
    #: How many new keepalive values of the target were seen since the first look.
    keepalives_seen: int = 0


class DepartureBook:
    """The VMs this node still lists after they left by live migration."""

    def __init__(self) -> None:
        self._entries: dict[str, Departure] = {}

    def note(self, uuid: str, target: str) -> None:
        """Record that ``uuid`` has just left for ``target`` (and is running there)."""
        self._entries[uuid] = Departure(target)

    def uuids(self) -> set[str]:
        """The departed VMs still listed here."""
        return set(self._entries)

    def target_of(self, uuid: str) -> str | None:
        """Where ``uuid`` runs as far as this node knows, if it is a listed departure."""
        entry = self._entries.get(uuid)
        return entry.target if entry else None

    def __bool__(self) -> bool:
        return bool(self._entries)

    def settle(self, nodes: Iterable[NodeRecord], here: str) -> dict[str, str]:
        """Drop the departures whose target's list can now be trusted.

        Returns the dropped VMs, each with the reason (for the log).
        """
        rows = {node.name: node for node in nodes}
        dropped: dict[str, str] = {}
        for uuid, entry in list(self._entries.items()):
            reason = self._reason_to_drop(uuid, entry, rows, here)
            if reason:
                del self._entries[uuid]
                dropped[uuid] = reason
        return dropped

    @staticmethod
    def _reason_to_drop(uuid: str, entry: Departure, rows: dict[str, NodeRecord], here: str) -> str:
        listers = sorted(
            name
            for name, row in rows.items()
            if name != here and row.daemonstate != "fenced" and uuid in row.runningdomains
        )
        if listers:
            return f"listed by {', '.join(listers)}"
        target = rows.get(entry.target)
        if target is None:
            return f"{entry.target} is no longer a node"
        if target.daemonstate == "fenced":
            return f"{entry.target} is fenced"
        if entry.keepalive is None:
            entry.keepalive = target.keepalive
        elif target.keepalive != entry.keepalive:
            entry.keepalive = target.keepalive
            entry.keepalives_seen += 1
        if entry.keepalives_seen >= KEEPALIVES_TO_TRUST:
            return f"{entry.target} no longer runs it"
        return ""
