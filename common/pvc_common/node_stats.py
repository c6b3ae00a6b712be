"""Counters a node daemon keeps in its node's ``stats`` key, for the API's ``/metrics``.

Each counter is a count and the total seconds of what it counts, so a monitoring system
gets both rates and mean durations. They live in ZooKeeper, not in a daemon's memory, so
a daemon restart loses nothing and the API daemon can export every node's counters:

* ``migration_live`` / ``migration_shutdown``: VMs this node sent away, by how they went
  (counted by the sending daemon, from its decision to the hand-over);
* ``fence`` / ``fence_failed``: times this node was fenced by a coordinator, and fences of
  it that were not confirmed (counted by the coordinator, the BMC exchange timed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: Every counter, in the order they are exported.
COUNTERS: Final = ("migration_live", "migration_shutdown", "fence", "fence_failed")


def read_counter(stats: Mapping[str, Any], name: str) -> tuple[int, float]:
    """``(count, total seconds)`` of one counter; a missing or damaged one reads as zero."""
    entry = stats.get(name)
    if not isinstance(entry, dict):
        return 0, 0.0
    count, seconds = entry.get("count", 0), entry.get("seconds", 0.0)
    valid_count = isinstance(count, int) and not isinstance(count, bool) and count >= 0
    valid_seconds = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    return (count if valid_count else 0), (float(seconds) if valid_seconds else 0.0)


def counted(stats: Mapping[str, Any], name: str, seconds: float) -> dict[str, Any]:
    """``stats`` with one more of counter ``name``, which took ``seconds``."""
    if name not in COUNTERS:
        raise KeyError(f"{name!r} is not a node counter")
    count, total = read_counter(stats, name)
    return {**stats, name: {"count": count + 1, "seconds": round(total + max(0.0, seconds), 3)}}
