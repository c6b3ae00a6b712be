"""The node counters behind /metrics (pvc_common.node_stats)."""

from __future__ import annotations

import pytest

from pvc_common.node_stats import COUNTERS, counted, read_counter


def test_counting_adds_one_and_the_seconds_and_keeps_the_others() -> None:
    stats = counted({}, "migration_live", 1.25)
    stats = counted(stats, "migration_live", 0.75)
    stats = counted(stats, "fence", 4.0)
    assert read_counter(stats, "migration_live") == (2, 2.0)
    assert read_counter(stats, "fence") == (1, 4.0)
    assert read_counter(stats, "fence_failed") == (0, 0.0)
    assert counted(stats, "migration_shutdown", -3)["migration_shutdown"]["seconds"] == 0.0


def test_damaged_counters_read_as_zero_and_unknown_ones_are_refused() -> None:
    damaged = {"fence": "three", "migration_live": {"count": True, "seconds": "x"}}
    assert read_counter(damaged, "fence") == (0, 0.0)
    assert read_counter(damaged, "migration_live") == (0, 0.0)
    assert counted(damaged, "fence", 1.0)["fence"] == {"count": 1, "seconds": 1.0}
    with pytest.raises(KeyError):
        counted({}, "reboots", 1.0)
    assert set(COUNTERS) == {"migration_live", "migration_shutdown", "fence", "fence_failed"}
