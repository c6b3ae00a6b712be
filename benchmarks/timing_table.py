"""The figures tables every benchmark prints: one shared layout, not a copy per script.

A timing entry is the ``as_dict()`` of a benchmark's series of seconds: ``min_s``,
``median_s``, ``max_s`` and ``runs_s`` (empty when nothing was measured, shown as n/a).
The scripts run as ``python benchmarks/NAME.py``, so this module is importable by its
bare name from each of them.
"""

from __future__ import annotations

from typing import Any

#: The width of a report's rules, unless it asks for another.
WIDTH = 78


def rule(width: int = WIDTH) -> str:
    """The line that opens and closes a report (or sets off its result line)."""
    return "=" * width


def banner(title: str, width: int = WIDTH) -> list[str]:
    """A report's title between two rules."""
    return [rule(width), title, rule(width)]


def column_header(width: int) -> str:
    """The min / median / max header above :func:`timing_row` lines of ``width``."""
    return f"  {'':<{width}}{'min':>9} {'median':>9} {'max':>9}"


def timing_row(label: str, entry: dict[str, Any], width: int, digits: int = 3) -> str:
    """One table line: ``label``, then min / median / max in seconds (or n/a)."""
    if not entry.get("runs_s"):
        return f"  {label:<{width}}{'n/a':>9}"
    figures = " ".join(f"{entry[key]:8.{digits}f}s" for key in ("min_s", "median_s", "max_s"))
    return f"  {label:<{width}}{figures}"


def median_and_min(entry: dict[str, Any]) -> str:
    """``median X s   min Y s`` of a timing entry (for tables without a max column)."""
    return f"median {entry['median_s']:8.3f} s   min {entry['min_s']:8.3f} s"


def ratio_of_medians(base: dict[str, Any], other: dict[str, Any]) -> str:
    """Speed-up as the ratio of medians (base / other), or n/a."""
    if not base.get("runs_s") or not other.get("runs_s") or other["median_s"] <= 0:
        return "n/a"
    return f"{base['median_s'] / other['median_s']:.2f}x"
